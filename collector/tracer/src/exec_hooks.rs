//! `execve`, `execv`, `execvp`, `execvpe` and `fexecve`, exported in front of libc's: a
//! traced process that replaces itself (`os.execv`, a re-launcher, `python -m ruff` running
//! its binary) has its part of the recording finished and the new program traced on
//! ([`crate::process_end::before_exec`]).
//!
//! With `posix_spawn` and `posix_spawnp`, they also keep following a program's children
//! whose environment the program chose without memlens's variables (`subprocess.run(...,
//! env={...})`, `os.execve(..., env)`): where the environment given has no `LD_PRELOAD`,
//! this process's own `LD_PRELOAD` and `MEMLENS_` variables are added to it (only while
//! descendants are followed; the program's own values of any of them are kept), on the
//! caller's stack ([`with_follow_vars`]). They are taken from the process's environment,
//! or where the program removed them from it (`os.environ.clear()`, `env -i`, `del
//! os.environ["LD_PRELOAD"]`) from the copy kept when following began in this process
//! ([`keep_follow_vars`]).
//!
//! Layer: the hooks layer; calls [`crate::process_end`] only. Preloaded, these names take
//! every call of the program and its libraries (glibc's own `execvp` and `posix_spawn` call
//! the system call directly: one announcement per `execvp`, none for `posix_spawn`, whose
//! child is not the traced process anyway).
//!
//! In every other process, and in a forked (or `vfork`ed) child about to exec, which is most
//! calls, a hook only reads two atomics and `getpid` before calling libc's function: no
//! lock, no allocation. In the traced process itself, the environment given to the new
//! program gets [`ENV_EXEC_CTRL`], built in a static buffer (an exec may come from a signal
//! handler). If the exec fails, the process goes on traced as before
//! ([`crate::process_end::exec_failed`]) and `errno` is libc's.

use std::cell::UnsafeCell;
use std::ffi::{c_char, c_int, CStr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use memlens_wire::handshake::{
    write_decimal, ENV_EXEC_CTRL, ENV_FOLLOW, ENV_FOLLOW_OPTIONS, ENV_PACKAGE, ENV_TRACER,
};

use crate::process_end;

type Argv = *const *const c_char;
type ExecveFn = unsafe extern "C" fn(*const c_char, Argv, Argv) -> c_int;
type FexecveFn = unsafe extern "C" fn(c_int, Argv, Argv) -> c_int;
type SpawnFn = unsafe extern "C" fn(
    *mut libc::pid_t,
    *const c_char,
    *const libc::posix_spawn_file_actions_t,
    *const libc::posix_spawnattr_t,
    Argv,
    Argv,
) -> c_int;

extern "C" {
    static environ: Argv;
}

/// libc's functions, in the order of [`NAMES`]; 0 until resolved. (`execv` and `execvp`
/// are `execve` and `execvpe` with the process's environment.)
static REAL: [AtomicUsize; 5] = [const { AtomicUsize::new(0) }; 5];
const NAMES: [&CStr; 5] = [c"execve", c"execvpe", c"fexecve", c"posix_spawn", c"posix_spawnp"];
const EXECVE: usize = 0;
const EXECVPE: usize = 1;
const FEXECVE: usize = 2;
const POSIX_SPAWN: usize = 3;
const POSIX_SPAWNP: usize = 4;

/// Finds libc's functions (from the library's constructor: the hooks then never call
/// `dlsym`, which may allocate, in a forked child), and keeps the variables following needs
/// if this process is followed already ([`keep_follow_vars`]).
pub fn init() {
    for i in 0..NAMES.len() {
        real(i);
    }
    keep_follow_vars();
}

/// The variables a followed child needs, as [`keep_follow_vars`] keeps them: the others of
/// memlens's are the process's own (its pipe, its control socket) or a session's.
const KEPT_VARS: [&str; 5] =
    ["LD_PRELOAD", ENV_TRACER, ENV_FOLLOW, ENV_FOLLOW_OPTIONS, ENV_PACKAGE];

/// The variables following needs, as they were when following began in this process
/// (NUL-terminated one after another in `bytes`, starting at `starts[..SNAPSHOT.len]`).
struct Snapshot {
    bytes: UnsafeCell<[u8; SNAPSHOT_BYTES]>,
    starts: UnsafeCell<[usize; SNAPSHOT_VARS]>,
    /// How many there are (0 until written; written once).
    len: AtomicUsize,
}
// SAFETY: written once, before `len` is published (Release); read after `len` (Acquire).
unsafe impl Sync for Snapshot {}
/// Room for them (under 1 KiB in all with usual paths).
const SNAPSHOT_BYTES: usize = 16 * 1024;
const SNAPSHOT_VARS: usize = KEPT_VARS.len();
static SNAPSHOT: Snapshot = Snapshot {
    bytes: UnsafeCell::new([0; SNAPSHOT_BYTES]),
    starts: UnsafeCell::new([0; SNAPSHOT_VARS]),
    len: AtomicUsize::new(0),
};

/// Keeps a copy of the [`KEPT_VARS`] in the process's environment (those that fit), once:
/// the first time it is called while the environment has `MEMLENS_FOLLOW` (at load in a
/// followed descendant; in the program `memlens run` runs, when its session starts, once
/// the bootstrap has set it). A program that then removes them still has its children
/// followed. Not for a `memlens.record()` block, whose children are followed only while it
/// lasts: its variables are removed when it ends, and none are kept.
pub fn keep_follow_vars() {
    static TAKEN: AtomicBool = AtomicBool::new(false);
    // SAFETY: the names are NUL-terminated; reading the environment as getenv does.
    if unsafe { libc::getenv(c"MEMLENS_FOLLOW".as_ptr()) }.is_null()
        || TAKEN.swap(true, Ordering::AcqRel)
    {
        return;
    }
    // SAFETY: written only here, once (TAKEN), before `len` is published.
    let (bytes, starts) = unsafe { (&mut *SNAPSHOT.bytes.get(), &mut *SNAPSHOT.starts.get()) };
    let kept = |entry: &[u8]| {
        KEPT_VARS.iter().any(|name| var_name(entry).strip_suffix(b"=") == Some(name.as_bytes()))
    };
    let (mut used, mut n) = (0, 0);
    // SAFETY: the process's environment, read as libc's exec functions read it.
    for entry in unsafe { args(environ) }.filter(|e| kept(e)) {
        if n == SNAPSHOT_VARS || used + entry.len() + 1 > SNAPSHOT_BYTES {
            break;
        }
        bytes[used..used + entry.len()].copy_from_slice(entry);
        bytes[used + entry.len()] = 0;
        starts[n] = used;
        used += entry.len() + 1;
        n += 1;
    }
    SNAPSHOT.len.store(n, Ordering::Release);
}

/// The entries of [`SNAPSHOT`], as environment strings.
fn snapshot() -> impl Iterator<Item = *const c_char> {
    let n = SNAPSHOT.len.load(Ordering::Acquire);
    // SAFETY: published (see Snapshot), never written again.
    let (bytes, starts) = unsafe { (&*SNAPSHOT.bytes.get(), &*SNAPSHOT.starts.get()) };
    starts[..n].iter().map(move |&i| bytes[i..].as_ptr().cast())
}

/// libc's function `i` (see [`NAMES`]), as an address.
fn real(i: usize) -> usize {
    let f = REAL[i].load(Ordering::Acquire);
    if f != 0 {
        return f;
    }
    // SAFETY: dlsym with a NUL-terminated name.
    let f = unsafe { libc::dlsym(libc::RTLD_NEXT, NAMES[i].as_ptr()) } as usize;
    REAL[i].store(f, Ordering::Release);
    f
}

/// `ENOSYS` when libc's function cannot be found (never on glibc).
fn missing() -> c_int {
    // SAFETY: errno is this thread's.
    unsafe { *libc::__errno_location() = libc::ENOSYS };
    -1
}

/// The arguments of `argv` (a NULL-terminated array of strings, or null).
///
/// # Safety
/// `argv` is null or a NULL-terminated array of NUL-terminated strings.
unsafe fn args<'a>(argv: Argv) -> impl Iterator<Item = &'a [u8]> {
    // SAFETY: per the function contract.
    unsafe { args_ptrs(argv) }.map(|p| unsafe { CStr::from_ptr(p) }.to_bytes())
}

/// The entries of `argv` (a NULL-terminated array of strings, or null).
///
/// # Safety
/// As for [`args`].
unsafe fn args_ptrs(argv: Argv) -> impl Iterator<Item = *const c_char> {
    let mut i = 0;
    std::iter::from_fn(move || {
        if argv.is_null() {
            return None;
        }
        // SAFETY: per the function contract, every entry up to the NULL is readable.
        let p = unsafe { *argv.add(i) };
        if p.is_null() {
            return None;
        }
        i += 1;
        Some(p)
    })
}

/// Whether an exec of `path` can succeed at all (an executable file): `execvp` in Python
/// tries each directory of PATH in turn, and the ones without the program need no
/// announcement.
///
/// # Safety
/// `path` is null or NUL-terminated.
unsafe fn may_run(path: *const c_char) -> bool {
    // SAFETY: per the function contract.
    !path.is_null()
        && unsafe { libc::faccessat(libc::AT_FDCWD, path, libc::X_OK, libc::AT_EACCESS) } == 0
}

/// Entries of an environment that [`with_follow_vars`] can make (on the caller's stack: 4
/// KiB, which a `vfork`ed child has to spare).
const FOLLOW_SLOTS: usize = 512;

/// The `NAME=` part of an environment string (all of it if it has no `=`).
fn var_name(entry: &[u8]) -> &[u8] {
    entry.iter().position(|&b| b == b'=').map_or(entry, |i| &entry[..=i])
}

/// Whether `entry` is one of the variables following a child needs: `LD_PRELOAD`, or one of
/// memlens's own but the one for the traced process's exec ([`ENV_EXEC_CTRL`]).
fn follow_var(entry: &[u8]) -> bool {
    let exec_ctrl = ENV_EXEC_CTRL.as_bytes();
    entry.starts_with(b"LD_PRELOAD=")
        || entry.starts_with(b"MEMLENS_")
            && !(entry.starts_with(exec_ctrl) && entry.get(exec_ctrl.len()) == Some(&b'='))
}

/// `envp`, or where it has no `LD_PRELOAD` while this process follows its descendants (its
/// own environment has `MEMLENS_FOLLOW`, or had it when following began), a copy of it in
/// `slots` with the [`follow_var`]s that `envp` lacks: this process's own, else those it had
/// then ([`keep_follow_vars`]). `envp` itself when nothing is missing, or when `slots` is too small. No
/// allocation, no lock: it runs in `vfork`ed children.
///
/// # Safety
/// `envp` is null (an empty environment) or a NULL-terminated array of NUL-terminated
/// strings; the result is valid as long as `envp`, `slots` and this process's environment
/// are.
unsafe fn with_follow_vars(envp: Argv, slots: &mut [*const c_char; FOLLOW_SLOTS]) -> Argv {
    // SAFETY: the process's environment, read as libc's exec functions read it. It is null
    // after `clearenv` (which `os.environ.clear()` calls since 3.14), as `envp` then is for
    // `execv`; `args` reads null as empty. The kept copy's entries are NUL-terminated.
    unsafe { merge_follow_vars(envp, environ, snapshot, slots) }
}

/// [`with_follow_vars`], with `own` for this process's environment and `kept` for the
/// copy [`keep_follow_vars`] made.
///
/// # Safety
/// As for [`with_follow_vars`], `own` being null or such an array too, and `kept` giving
/// NUL-terminated strings.
unsafe fn merge_follow_vars<K: Iterator<Item = *const c_char>>(
    envp: Argv,
    own: Argv,
    kept: impl Fn() -> K,
    slots: &mut [*const c_char; FOLLOW_SLOTS],
) -> Argv {
    let mut n = 0;
    // SAFETY: per the function contract.
    for entry in unsafe { args(envp) } {
        if entry.starts_with(b"LD_PRELOAD=") {
            return envp;
        }
        n += 1;
    }
    // SAFETY: the entries of `own` and of `kept` are NUL-terminated strings.
    let text = |p: *const c_char| unsafe { CStr::from_ptr(p) }.to_bytes();
    // SAFETY: as above.
    let mine = || unsafe { args_ptrs(own) }.chain(kept());
    let follow = mine().any(|p| text(p).starts_with(b"MEMLENS_FOLLOW="));
    if !follow || n + 1 > FOLLOW_SLOTS {
        return envp;
    }
    for (i, slot) in slots[..n].iter_mut().enumerate() {
        // SAFETY: `envp` has `n` entries before its NULL.
        *slot = unsafe { *envp.add(i) };
    }
    let given = n;
    for p in mine() {
        let entry = text(p);
        let name = var_name(entry);
        if follow_var(entry) && !slots[..n].iter().any(|&q| text(q).starts_with(name)) {
            if n + 1 >= FOLLOW_SLOTS {
                return envp;
            }
            slots[n] = p;
            n += 1;
        }
    }
    if n == given {
        return envp;
    }
    slots[n] = std::ptr::null();
    slots.as_ptr()
}

/// The environment a traced process's exec gives the new program: `envp` with
/// [`ENV_EXEC_CTRL`], in a static buffer (no allocation), held until [`release_env`].
const ENV_SLOTS: usize = 4096;

struct EnvBuf {
    entries: [*const c_char; ENV_SLOTS],
    var: [u8; 64],
}

struct EnvCell(UnsafeCell<EnvBuf>);
// SAFETY: only reached by the holder of ENV_BUSY.
unsafe impl Sync for EnvCell {}
static EXEC_ENV: EnvCell =
    EnvCell(UnsafeCell::new(EnvBuf { entries: [std::ptr::null(); ENV_SLOTS], var: [0; 64] }));
static ENV_BUSY: AtomicBool = AtomicBool::new(false);

/// `envp` with `MEMLENS_EXEC_CTRL=FD:PID` (any earlier one left out), or `envp` itself when
/// the buffer is in use (two threads exec'ing at once) or too small: the new program then
/// does not report the end, which the recorder reads from /proc instead.
///
/// # Safety
/// `envp` is null or a NULL-terminated array of NUL-terminated strings.
unsafe fn env_with_ctrl(envp: Argv, fd: c_int) -> Argv {
    if ENV_BUSY.swap(true, Ordering::AcqRel) {
        return envp;
    }
    // SAFETY: we hold ENV_BUSY.
    let buf = unsafe { &mut *EXEC_ENV.0.get() };
    let name = ENV_EXEC_CTRL.as_bytes();
    buf.var[..name.len()].copy_from_slice(name);
    buf.var[name.len()] = b'=';
    let mut len = name.len() + 1;
    len += write_decimal(fd as u32, &mut buf.var[len..]);
    buf.var[len] = b':';
    len += 1;
    // SAFETY: getpid has no preconditions.
    len += write_decimal(unsafe { libc::getpid() } as u32, &mut buf.var[len..]);
    buf.var[len] = 0;
    let prefix = &buf.var[..name.len() + 1];
    let mut n = 0;
    if !envp.is_null() {
        loop {
            // SAFETY: per the function contract, every entry up to the NULL is readable.
            let p = unsafe { *envp.add(n) };
            if p.is_null() {
                break;
            }
            n += 1;
        }
    }
    if n + 2 > ENV_SLOTS {
        ENV_BUSY.store(false, Ordering::Release);
        return envp;
    }
    let mut out = 0;
    for i in 0..n {
        // SAFETY: as above.
        let p = unsafe { *envp.add(i) };
        // SAFETY: an environment string, NUL-terminated.
        if !unsafe { CStr::from_ptr(p) }.to_bytes().starts_with(prefix) {
            buf.entries[out] = p;
            out += 1;
        }
    }
    buf.entries[out] = buf.var.as_ptr().cast();
    buf.entries[out + 1] = std::ptr::null();
    buf.entries.as_ptr()
}

/// Gives the buffer of [`env_with_ctrl`] back (the exec returned).
fn release_env(env: Argv, envp: Argv) {
    if env != envp {
        ENV_BUSY.store(false, Ordering::Release);
    }
}

/// Runs `exec` (libc's function, with the environment to give) as the traced process's
/// exec of `argv`, if this is it: see the module doc. `path` is the file, when known, to
/// skip the work for one that cannot run.
///
/// # Safety
/// The arguments are those of an exec call.
unsafe fn traced_exec(
    path: *const c_char,
    argv: Argv,
    envp: Argv,
    plain: impl FnOnce() -> c_int,
    exec: impl FnOnce(Argv) -> c_int,
) -> c_int {
    // (The cheap test first: most execs are a forked child's.)
    // SAFETY: per the function contract.
    if process_end::own_ctrl().is_none() || !path.is_null() && !unsafe { may_run(path) } {
        return plain();
    }
    // SAFETY: per the function contract.
    let Some(fd) = (unsafe { process_end::before_exec(args(argv)) }) else {
        return plain();
    };
    // SAFETY: per the function contract.
    let env = unsafe { env_with_ctrl(envp, fd) };
    let rc = exec(env);
    // Still here: the exec failed.
    // SAFETY: errno is this thread's.
    let errno = unsafe { *libc::__errno_location() };
    release_env(env, envp);
    process_end::exec_failed(fd);
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
    rc
}

/// libc's function `i` of the `execve` kind (with an environment).
fn real_with_env(i: usize) -> Option<ExecveFn> {
    let f = real(i);
    // SAFETY: `i` names a function of this signature (see NAMES), found by dlsym.
    (f != 0).then(|| unsafe { std::mem::transmute::<usize, ExecveFn>(f) })
}

/// # Safety
/// None beyond `execve(2)`'s.
#[no_mangle]
pub unsafe extern "C" fn execve(path: *const c_char, argv: Argv, envp: Argv) -> c_int {
    let Some(f) = real_with_env(EXECVE) else { return missing() };
    let mut slots = [std::ptr::null(); FOLLOW_SLOTS];
    // SAFETY: forwarding the caller's arguments, `envp` with what following needs.
    unsafe {
        let envp = with_follow_vars(envp, &mut slots);
        traced_exec(path, argv, envp, || f(path, argv, envp), |env| f(path, argv, env))
    }
}

/// # Safety
/// None beyond `execv(3)`'s.
#[no_mangle]
pub unsafe extern "C" fn execv(path: *const c_char, argv: Argv) -> c_int {
    // SAFETY: `execv` is `execve` with the process's environment.
    unsafe { execve(path, argv, environ) }
}

/// # Safety
/// None beyond `execvp(3)`'s.
#[no_mangle]
pub unsafe extern "C" fn execvp(file: *const c_char, argv: Argv) -> c_int {
    // SAFETY: `execvp` is `execvpe` with the process's environment.
    unsafe { execvpe(file, argv, environ) }
}

/// # Safety
/// None beyond `execvpe(3)`'s.
#[no_mangle]
pub unsafe extern "C" fn execvpe(file: *const c_char, argv: Argv, envp: Argv) -> c_int {
    let Some(f) = real_with_env(EXECVPE) else { return missing() };
    let mut slots = [std::ptr::null(); FOLLOW_SLOTS];
    // SAFETY: forwarding the caller's arguments, `envp` with what following needs.
    unsafe {
        let envp = with_follow_vars(envp, &mut slots);
        let path = if has_slash(file) { file } else { std::ptr::null() };
        traced_exec(path, argv, envp, || f(file, argv, envp), |env| f(file, argv, env))
    }
}

/// # Safety
/// None beyond `fexecve(3)`'s.
#[no_mangle]
pub unsafe extern "C" fn fexecve(fd: c_int, argv: Argv, envp: Argv) -> c_int {
    let f = real(FEXECVE);
    if f == 0 {
        return missing();
    }
    // SAFETY: libc's fexecve, found by dlsym.
    let f = unsafe { std::mem::transmute::<usize, FexecveFn>(f) };
    let mut slots = [std::ptr::null(); FOLLOW_SLOTS];
    // SAFETY: forwarding the caller's arguments, `envp` with what following needs.
    unsafe {
        let envp = with_follow_vars(envp, &mut slots);
        traced_exec(std::ptr::null(), argv, envp, || f(fd, argv, envp), |env| f(fd, argv, env))
    }
}

/// libc's `posix_spawn` or `posix_spawnp` (`i`), with the environment `envp` plus what
/// following needs ([`with_follow_vars`]).
///
/// # Safety
/// The arguments are those of a `posix_spawn` call.
unsafe fn spawn(
    i: usize,
    pid: *mut libc::pid_t,
    file: *const c_char,
    actions: *const libc::posix_spawn_file_actions_t,
    attr: *const libc::posix_spawnattr_t,
    argv: Argv,
    envp: Argv,
) -> c_int {
    let f = real(i);
    if f == 0 {
        return libc::ENOSYS;
    }
    // SAFETY: `i` names a function of this signature, found by dlsym.
    let f = unsafe { std::mem::transmute::<usize, SpawnFn>(f) };
    let mut slots = [std::ptr::null(); FOLLOW_SLOTS];
    // SAFETY: forwarding the caller's arguments, `envp` with what following needs.
    unsafe { f(pid, file, actions, attr, argv, with_follow_vars(envp, &mut slots)) }
}

/// # Safety
/// None beyond `posix_spawn(3)`'s.
#[no_mangle]
pub unsafe extern "C" fn posix_spawn(
    pid: *mut libc::pid_t,
    path: *const c_char,
    actions: *const libc::posix_spawn_file_actions_t,
    attr: *const libc::posix_spawnattr_t,
    argv: Argv,
    envp: Argv,
) -> c_int {
    // SAFETY: forwarding the caller's arguments.
    unsafe { spawn(POSIX_SPAWN, pid, path, actions, attr, argv, envp) }
}

/// # Safety
/// None beyond `posix_spawnp(3)`'s.
#[no_mangle]
pub unsafe extern "C" fn posix_spawnp(
    pid: *mut libc::pid_t,
    file: *const c_char,
    actions: *const libc::posix_spawn_file_actions_t,
    attr: *const libc::posix_spawnattr_t,
    argv: Argv,
    envp: Argv,
) -> c_int {
    // SAFETY: forwarding the caller's arguments.
    unsafe { spawn(POSIX_SPAWNP, pid, file, actions, attr, argv, envp) }
}

/// Whether `file` (NUL-terminated, or null) has a `/`: exec'd as a path, not looked up.
///
/// # Safety
/// `file` is null or NUL-terminated.
unsafe fn has_slash(file: *const c_char) -> bool {
    // SAFETY: per the function contract.
    !file.is_null() && unsafe { CStr::from_ptr(file) }.to_bytes().contains(&b'/')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;

    /// An environment array over `vars` (kept alive by the returned strings).
    fn env(vars: &[&str]) -> (Vec<CString>, Vec<*const c_char>) {
        let strings: Vec<CString> = vars.iter().map(|v| CString::new(*v).unwrap()).collect();
        let mut ptrs: Vec<*const c_char> = strings.iter().map(|s| s.as_ptr()).collect();
        ptrs.push(std::ptr::null());
        (strings, ptrs)
    }

    /// The environment `merge_follow_vars` gives, as strings.
    fn merged(given: Option<&[&str]>, own: &[&str], kept: &[&str]) -> (Vec<String>, bool) {
        let (_g, given) = given.map(env).unzip();
        let (_o, own) = env(own);
        let (_k, kept) = env(kept);
        let envp = given.as_ref().map_or(std::ptr::null(), |g| g.as_ptr());
        let kept = || kept[..kept.len() - 1].iter().copied();
        let mut slots = [std::ptr::null(); FOLLOW_SLOTS];
        // SAFETY: NULL-terminated arrays of NUL-terminated strings, alive meanwhile.
        let out = unsafe { merge_follow_vars(envp, own.as_ptr(), kept, &mut slots) };
        // SAFETY: as above.
        let vars = unsafe { args(out) }.map(|v| String::from_utf8_lossy(v).into_owned()).collect();
        (vars, out == envp)
    }

    const OWN: [&str; 4] =
        ["PATH=/bin", "LD_PRELOAD=/lib/t.so", "MEMLENS_FOLLOW=/d", "MEMLENS_EXEC_CTRL=3:9"];

    #[test]
    fn an_environment_without_the_variables_gets_the_processs_own() {
        let (vars, same) = merged(Some(&["A=1"]), &OWN, &[]);
        assert!(!same);
        assert_eq!(vars, ["A=1", "LD_PRELOAD=/lib/t.so", "MEMLENS_FOLLOW=/d"]);
        // The program's own values are kept; an LD_PRELOAD of its own leaves it as it is.
        let (vars, _) = merged(Some(&["MEMLENS_FOLLOW=/mine"]), &OWN, &[]);
        assert_eq!(vars, ["MEMLENS_FOLLOW=/mine", "LD_PRELOAD=/lib/t.so"]);
        assert!(merged(Some(&["LD_PRELOAD=/x.so"]), &OWN, &[]).1);
        // Nothing to add: the same array.
        assert!(merged(Some(&["LD_PRELOAD=/lib/t.so", "MEMLENS_FOLLOW=/d"]), &OWN, &[]).1);
    }

    #[test]
    fn an_emptied_environment_gets_the_kept_copy() {
        let kept = ["LD_PRELOAD=/lib/t.so", "MEMLENS_FOLLOW=/d", "MEMLENS_PACKAGE=/p"];
        // `os.environ.clear()`: the process's own is empty; `clearenv`: `execv`'s is null.
        let (vars, _) = merged(Some(&[]), &[], &kept);
        assert_eq!(vars, kept);
        let (vars, same) = merged(None, &[], &kept);
        assert!(!same);
        assert_eq!(vars, kept);
        // The process's own come first, the kept copy fills in what they lack.
        let (vars, _) = merged(Some(&["A=1"]), &["MEMLENS_FOLLOW=/now"], &kept);
        assert_eq!(
            vars,
            ["A=1", "MEMLENS_FOLLOW=/now", "LD_PRELOAD=/lib/t.so", "MEMLENS_PACKAGE=/p"]
        );
        // Not following (no MEMLENS_FOLLOW anywhere): unchanged.
        assert!(merged(Some(&["A=1"]), &["LD_PRELOAD=/lib/t.so"], &[]).1);
    }
}
