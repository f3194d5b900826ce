"""`threads = 0`: the CPUs a process may use, capped by OMP_NUM_THREADS."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from playground.core.cpus import usable_cpus
from playground.tts.piper import onnx_threads

ALL = sorted(os.sched_getaffinity(0))


def usable_in_a_child(cpus: set[int], env: dict[str, str]) -> int:
    """usable_cpus() in a process started on `cpus` alone (as `taskset` would), with `env`."""
    child = subprocess.run([sys.executable, "-c", "from playground.core.cpus import usable_cpus; print(usable_cpus())"],
                           preexec_fn=lambda: os.sched_setaffinity(0, cpus), env={**os.environ, **env},
                           capture_output=True, text=True, check=True)
    return int(child.stdout)


def test_the_cpus_a_process_may_run_on_not_the_machines():
    assert usable_in_a_child({ALL[0]}, {"OMP_NUM_THREADS": ""}) == 1
    assert usable_in_a_child(set(ALL), {"OMP_NUM_THREADS": ""}) == len(ALL)


@pytest.mark.parametrize("value, expected", [("1", 1), ("999", len(ALL)), ("0", len(ALL)), ("two", len(ALL)),
                                             (" 1 ", 1)])
def test_omp_num_threads_caps_it(monkeypatch, value, expected):
    monkeypatch.setenv("OMP_NUM_THREADS", value)
    assert usable_cpus() == expected


def test_a_voice_gets_fewer_threads_only_when_the_process_has_fewer_cpus(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    full = len(ALL) >= (os.cpu_count() or 1)
    assert onnx_threads(0) == (0 if full else len(ALL))  # 0: onnxruntime's own count, the machine's cores
    assert onnx_threads(3) == 3  # tts.threads as set
    if (os.cpu_count() or 1) > 1:
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert onnx_threads(0) == 1
