"""How many threads a model may use when its preset says `threads = 0`."""

from __future__ import annotations

import os


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity: taskset, a container's cpuset, which
    `os.cpu_count()` ignores), capped by OMP_NUM_THREADS when it is set: the usual way to give
    OpenMP programs, as llama.cpp and CTranslate2 are, fewer threads. More threads than cores
    wait on each other at every step: llama.cpp's threads spin at each barrier for one that
    shares a core with another process (docs/presets.md: 2.6x as long on 2 threads as on 1
    beside two busy processes)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    limit = os.environ.get("OMP_NUM_THREADS", "").strip()
    return max(1, min(cpus, int(limit))) if limit.isdigit() and int(limit) > 0 else max(1, cpus)
