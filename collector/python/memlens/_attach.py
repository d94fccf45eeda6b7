"""What ``memlens attach PID`` runs inside the process it attaches to.

``memlens attach`` has the process start a thread of its own (through ``sys.remote_exec``
on 3.14+, else through the debugger it drives, which loads the tracer first), which takes
the GIL like any Python thread and calls :func:`main` with the folder ``memlens attach``
made for the session. That folder holds
``options.json`` (the recording's path and options) and two named pipes: ``status``, on
which this side reports to ``memlens attach`` (``started MODE``, ``message TEXT``,
``error TEXT``, ``stopped peak=N left=N``), and ``control``, from which it reads ``stop``.
The recording stops at ``stop`` and also when every writer of ``control`` has gone (the
``memlens attach`` process ended, however it ended): tracing never outlives the command
that started it. Nothing is printed to the program's own stdout or stderr.
"""

import json
import os
import sys


def main(folder):
    """Records until told to stop; returns when the recording is complete on disk."""
    with open(os.path.join(folder, "status"), "w", buffering=1) as status:
        def say(kind, text=""):
            status.write(f"{kind} {' '.join(str(text).split())}\n")

        try:
            with open(os.path.join(folder, "options.json")) as f:
                o = json.load(f)
            import memlens

            # This thread's own work (starting, waiting, reporting) is not the program's
            # memory: it is paused from before tracing starts (the tracer is loaded already).
            memlens._load(o["tracer"]).memlens_pause(1)  # noqa: SLF001
            r = memlens.record(o["output"], native=o["native"], census=o["census"],
                               interval_ms=o["interval_ms"], sample=o.get("sample"),
                               native_stacks=o.get("native_stacks", False))
            r._binary = o["binary"]  # noqa: SLF001 - the executable that attached
            r._say = lambda line: say("message", line)  # noqa: SLF001
            r.start()
        except BaseException as e:  # noqa: BLE001 - reported, never raised in the program
            say("error", f"{type(e).__name__}: {e}")
            return
        say("started", memlens._stack_mode())  # noqa: SLF001
        try:
            # Blocks (without the GIL) until `memlens attach` opens its end.
            with open(os.path.join(folder, "control")) as control:
                for line in control:
                    if line.strip() == "stop":
                        break
        finally:
            try:
                r.stop()
                # Leaves the program as it was before the attach: every hook taken out.
                if memlens._lib.memlens_unhook() != 0:  # noqa: SLF001
                    say("message", "memlens: another tool wrapped memlens's allocator or "
                        "frame-evaluation hooks after it: those stay (they only forward)")
            except BaseException as e:  # noqa: BLE001
                say("error", f"{type(e).__name__}: {e}")
            else:
                say("stopped", f"peak={r.peak_bytes} left={r.leaked_bytes}")
