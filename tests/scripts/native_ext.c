/* A tiny CPython extension for collector/tests/native_stacks_e2e.rs, built by the test with
 * the machine's C compiler: `allocate(n)` mallocs n bytes through two C functions, one
 * static and kept out of line (`make_buffer`), one static inline (`fill_block`), which the
 * compiler folds into its caller: its frame exists only in the debug information. The
 * blocks are kept alive, so they show in the heap at the end. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdlib.h>
#include <string.h>

static PyObject *kept;

static inline char *fill_block(size_t n) {
    char *p = malloc(n); // FILL_BLOCK
    if (p) {
        memset(p, 7, n);
    }
    return p;
}

static __attribute__((noinline)) char *make_buffer(size_t n) {
    char *p = fill_block(n); // MAKE_BUFFER
    return p;
}

static PyObject *allocate(PyObject *self, PyObject *arg) {
    size_t n = PyLong_AsSize_t(arg);
    if (n == (size_t)-1 && PyErr_Occurred()) {
        return NULL;
    }
    char *p = make_buffer(n); // ALLOCATE
    PyObject *cap = PyCapsule_New(p, NULL, NULL);
    if (cap == NULL || PyList_Append(kept, cap) < 0) {
        return NULL;
    }
    Py_DECREF(cap);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {{"allocate", allocate, METH_O, NULL}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "native_ext", NULL, -1, methods};

PyMODINIT_FUNC PyInit_native_ext(void) {
    kept = PyList_New(0);
    return kept ? PyModule_Create(&module) : NULL;
}
