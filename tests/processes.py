"""A `playground` child process whose output a test reads while it runs."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class Child:
    """`python -m playground.cli ARGS` with its stdout and stderr read line by line in threads
    (so neither pipe fills up while the test waits for something)."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "playground.cli", *args], stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, cwd=ROOT,
                                        env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [threading.Thread(target=self._read, args=(stream, lines), daemon=True)
                         for stream, lines in ((self.process.stdout, self.out), (self.process.stderr, self.err))]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream, lines: list[str]) -> None:
        for line in stream:
            lines.append(line.rstrip("\n"))

    def wait_for(self, done: Callable[[list[str]], bool], timeout: float) -> None:
        """Returns once `done(stdout lines so far)` holds; fails when the process ends first or time is up."""
        deadline = time.monotonic() + timeout
        while not done(list(self.out)):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()
                raise AssertionError(f"never happened (exit {self.process.poll()}); stdout: {self.out[-5:]}, "
                                     f"stderr: {self.err[-10:]}")
            time.sleep(0.02)

    def finish(self, timeout: float) -> tuple[int, str, str]:
        """(exit status, stdout, stderr) once the process has ended."""
        try:
            status = self.process.wait(timeout)
        finally:
            self.process.kill()
        for reader in self._readers:
            reader.join(5)
        return status, "\n".join(self.out), "\n".join(self.err)
