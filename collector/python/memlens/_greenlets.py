"""Greenlets (greenlet, and gevent and eventlet on it): each thread's Python stack made
right again at every switch.

A switch swaps the thread's C stack and Python frames for the other greenlet's without
returning through the tracer's hooks, which would otherwise go on from the previous
greenlet's stack (charging one greenlet's memory to another's lines, for the rest of the
run). greenlet calls a trace function (``greenlet.settrace``, one per thread) after every
switch or throw, in the greenlet switched to; memlens's has the tracer build the thread's
stack again from that greenlet's frames (``memlens_stack_switched``). A greenlet's stack
starts at its ``run`` function, as its tracebacks do.

A program's own trace function keeps running, after memlens's: the one a thread had is
chained, and ``greenlet.settrace``/``greenlet.gettrace`` are wrapped so that one the
program sets later is chained too, and the program gets its own back (``None`` when it set
none). Code that took greenlet's ``settrace`` before memlens wrapped it (imported greenlet
before ``memlens.record()`` started) replaces memlens's with its own; well-behaved tracers
(gevent's monitor) call the previous one, which is memlens's.

Imported, untraced, by ``memlens._follow_greenlets`` once the program has imported
greenlet while traced.
"""

_lib = None
# greenlet's own settrace and gettrace, once wrapped.
_settrace = None
_gettrace = None


def follow(lib, greenlet):
    """Wraps greenlet's settrace/gettrace (once) and puts memlens's trace function on the
    calling thread; every thread's stack is built afresh at its next use, since greenlets
    may have switched unseen until now (a program that imported greenlet before tracing
    started, or between two ``memlens.record()`` blocks)."""
    global _lib, _settrace, _gettrace
    if getattr(greenlet, "settrace", None) is None:
        return  # greenlet before 0.4: no tracing of switches
    _lib = lib
    if _settrace is None:
        _settrace, _gettrace = greenlet.settrace, greenlet.gettrace
        settrace.__doc__, gettrace.__doc__ = _settrace.__doc__, _gettrace.__doc__
        greenlet.settrace, greenlet.gettrace = settrace, gettrace
    lib.memlens_forget_stacks()
    on_thread()


def on_thread():
    """memlens's trace function on the calling thread (a new thread's first Python event,
    see ``memlens._thread_profile``), before the one the thread has."""
    if _settrace is None:
        return
    current = _gettrace()
    if current is not _lib.memlens_greenlet_trace and type(current) is not _Then:
        _settrace(_trace(current))


class _Then:
    """memlens's trace function followed by the program's, `then`."""

    __slots__ = ("then",)

    def __init__(self, then):
        self.then = then

    def __call__(self, event, args):
        # Leaves this frame out of the stack it builds.
        _lib.memlens_stack_switched(1)
        return self.then(event, args)


def _trace(then):
    """memlens's trace function, chained before `then` (the program's, or None): without one
    it is the tracer's C function itself, which costs no Python frame per switch."""
    return _lib.memlens_greenlet_trace if then is None else _Then(then)


def _theirs(trace):
    """The program's trace function in the one installed."""
    if trace is _lib.memlens_greenlet_trace:
        return None
    if type(trace) is _Then:
        return trace.then
    return trace


def settrace(callback):
    previous = _theirs(_gettrace())
    _settrace(_trace(callback))
    return previous


def gettrace():
    return _theirs(_gettrace())
