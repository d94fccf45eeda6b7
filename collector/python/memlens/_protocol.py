"""What this package and the ``memlens`` command say to each other outside the record
stream, mirrored from collector/wire/src/handshake.rs (collector/tests/contracts.rs checks
that both agree): the environment ``memlens run`` gives the program (read by _bootstrap) and
the lines ``memlens sink`` prints for ``memlens.record()``."""

ENV_MODE = "MEMLENS_MODE"
ENV_FD = "MEMLENS_FD"
ENV_NATIVE_FD = "MEMLENS_NATIVE_FD"
ENV_CTRL_FD = "MEMLENS_CTRL_FD"
ENV_TRACER = "MEMLENS_TRACER"
ENV_NATIVE = "MEMLENS_NATIVE"
ENV_CENSUS = "MEMLENS_CENSUS"
ENV_CENSUS_INTERVAL = "MEMLENS_CENSUS_INTERVAL"
ENV_CENSUS_MAX_OBJECTS = "MEMLENS_CENSUS_MAX_OBJECTS"
ENV_SAMPLE_BYTES = "MEMLENS_SAMPLE_BYTES"
ENV_NATIVE_STACKS = "MEMLENS_NATIVE_STACKS"
ENV_FOLLOW = "MEMLENS_FOLLOW"
ENV_FOLLOW_PENDING = "MEMLENS_FOLLOW_PENDING"
ENV_FOLLOW_OPTIONS = "MEMLENS_FOLLOW_OPTIONS"
ENV_PACKAGE = "MEMLENS_PACKAGE"
ENV_EXEC_CTRL = "MEMLENS_EXEC_CTRL"

ENV = (ENV_MODE, ENV_FD, ENV_NATIVE_FD, ENV_CTRL_FD, ENV_TRACER, ENV_NATIVE, ENV_CENSUS,
       ENV_CENSUS_INTERVAL, ENV_CENSUS_MAX_OBJECTS, ENV_SAMPLE_BYTES, ENV_NATIVE_STACKS,
       ENV_FOLLOW, ENV_FOLLOW_PENDING, ENV_FOLLOW_OPTIONS, ENV_PACKAGE, ENV_EXEC_CTRL)

_READY = "ready "
_SAMPLE = "sample "
_FOLLOW = "follow "


def sampling_line(line):
    """Whether the sink's line is its ``sample N`` line (it comes before ``ready``)."""
    return line.startswith(_SAMPLE)


def follow_dir(line):
    """The directory from the sink's ``follow DIR`` line (it comes before ``ready``), or None
    if the line is not one."""
    return line[len(_FOLLOW):].rstrip("\n") if line.startswith(_FOLLOW) else None


def ready_tracer(line):
    """The tracer library's path from the sink's first line, or None if it is not ``ready``."""
    return line[len(_READY):].strip() if line.startswith(_READY) else None


def done_figures(out):
    """(peak, left, total) in bytes from the sink's output (its ``done peak=N left=N
    [total=N]`` line); None for a figure it did not give."""
    words = dict(w.partition("=")[::2] for w in out.split() if "=" in w)
    figure = lambda k: int(words[k]) if k in words else None  # noqa: E731
    return figure("peak"), figure("left"), figure("total")


MAX_COMMAND_LINE = 4096


def child_line(version, implementation, ppid, command=b""):
    """The first line a followed descendant writes on its ``records`` socket (then the
    tracer's records): its interpreter, its parent's pid, and its command line as
    ``/proc/self/cmdline`` gives it (bytes; ``%XX`` for a byte that is not printable ASCII, a
    space or ``%``), which /proc may no longer tell when the recorder looks."""
    line = f"child {version} {implementation} {ppid}"
    if command:
        line += " " + "".join(chr(b) if 0x21 <= b <= 0x7e and b != 0x25 else f"%{b:02x}"
                              for b in command[:MAX_COMMAND_LINE])
    return line + "\n"


def error_number(out):
    """The OS error number from the sink's ``error errno=N`` line, 0 if none."""
    for word in out.split():
        if word.startswith("errno="):
            return int(word[len("errno="):])
    return 0
