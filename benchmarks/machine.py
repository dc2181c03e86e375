"""The machine a benchmark ran on, as the first line of every table and a field of every
JSON output: ``CPU: <model name>; ISA <active path>; N threads``.

Imported by the scripts next to it (their own folder is first on ``sys.path`` however they
are started), never by the package.
"""
from __future__ import annotations

import platform


def cpu_model() -> str:
    """The CPU's marketing name: /proc/cpuinfo's first "model name" (Linux x86), else what
    the platform module knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_line(threads=None) -> str:
    """'CPU: <model name>; ISA <active path>; N threads' ("1 thread"). ``threads``: the
    count the table used (an int, or a text such as "1,2" for several); default
    resnet_cpp's setting."""
    import resnet_cpp

    if threads is None:
        threads = resnet_cpp.num_threads()
    plural = "" if str(threads) == "1" else "s"
    return f"CPU: {cpu_model()}; ISA {resnet_cpp.active_isa()}; {threads} thread{plural}"
