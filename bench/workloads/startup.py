"""Start-up and shut-down alone: a script that does nothing.

Every other workload's time includes this fixed cost (interpreter start, the profiler's own
imports and set-up, writing the file at exit); here it is all there is."""
