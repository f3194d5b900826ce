"""The process's own peak resident memory, for the reports that quote it (`call --calls`, benchmarks)."""

from __future__ import annotations

import resource
from pathlib import Path


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB. Linux's ru_maxrss survives fork and
    exec, so a process started by a large parent (a test suite) would report the parent's peak;
    VmHWM in /proc/self/status is this process's own. ru_maxrss where there is no /proc."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports kB
