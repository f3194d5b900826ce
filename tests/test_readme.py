"""The README's examples, run as written: every `playground ...` line of its code blocks,
through the installed console script, each as its own test (so they run side by side under
xdist), in a scratch folder holding the files of earlier lines it reads: a recorded question,
or the trace the first line with that `--trace FILE` writes. A line that repeats an earlier
line's command (the tour repeats the first example) shares that line's one run. A
server example (serve-*) must come up and listen, a live microphone example must listen (both
run until Ctrl-C); the phone call example gets the serve-agent its comment names."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.speech import silence, speech, write_wav

ROOT = Path(__file__).resolve().parent.parent
PLAYGROUND = Path(sys.executable).parent / "playground"  # the console script beside this interpreter
SERVERS = ("serve-tts", "serve-llm", "serve-agent")  # they listen until stopped
START_TIMEOUT_S = 180.0


def examples() -> list[str]:
    """Every line of a README code block (fenced or indented) that runs `playground`."""
    found, fenced = [], False
    for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
            continue
        text = line.strip()
        if (fenced or line.startswith("    ")) and re.match(r"(\.venv/bin/)?playground [a-z]", text):
            found.append(text)
    return found


def argv(example: str) -> list[str]:
    """The example's words, comments dropped, with its `playground` the installed script."""
    return [str(PLAYGROUND), *shlex.split(example, comments=True)[1:]]


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def start_server(args: list[str], cwd: Path) -> subprocess.Popen:
    """A server example, once it listens on the 127.0.0.1 port it prints."""
    server = subprocess.Popen(args, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    printed: list[str] = []
    threading.Thread(target=lambda: printed.extend(server.stdout), daemon=True).start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not any((m := re.search(r"127\.0\.0\.1:(\d+)", line)) and listening(int(m.group(1))) for line in printed):
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            said = server.stderr.read()[-2000:]
            raise AssertionError(f"{shlex.join(args[1:])}: never listened: {printed[-3:]} {said}")
        time.sleep(0.2)
    return server


def stop_server(server: subprocess.Popen) -> str:
    server.terminate()
    server.wait(timeout=60)
    return server.stderr.read()


def listen_then_stop(args: list[str], cwd: Path) -> None:
    """A live-microphone example listens until Ctrl-C: once it says it listens, Ctrl-C ends it (130)."""
    process = subprocess.Popen(args, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    said: list[str] = []
    reader = threading.Thread(target=lambda: said.extend(process.stderr), daemon=True)
    reader.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not any("Ctrl-C" in line or "mic unavailable" in line for line in said):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"{shlex.join(args[1:])}: never listened (exit {process.poll()}): {said[-10:]}")
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    status = process.wait(timeout=60)
    reader.join(10)
    assert status == 130 and not any("Traceback" in line for line in said), f"exit {status}: {said[-20:]}"


def written(args: list[str]) -> list[str]:
    """The files an example writes for later lines (its `--trace FILE`)."""
    return [args[i + 1] for i, arg in enumerate(args[:-1]) if arg == "--trace"]


def run_example(args: list[str], cwd: Path) -> None:
    done = subprocess.run(args, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600)
    # a bench is a latency gate: on a slow machine it may say a p50 is over budget, and exit 1
    gate_closed = args[1] == "bench" and done.returncode == 1 and "OVER BUDGET" in done.stdout
    assert (done.returncode == 0 or gate_closed) and "Traceback" not in done.stderr, \
        f"{shlex.join(args[1:])}\nexit {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"


EXAMPLES = examples()


def example_id(index: int, example: str) -> str:
    words = [w.lstrip("-") for w in shlex.split(example, comments=True)[1:] if re.fullmatch(r"[\w.-]+", w)]
    return f"{index:02d}-" + "-".join(words[:3])


def made_earlier(example: str) -> dict[str, str | None]:
    """The files `example` reads that the README leaves to earlier lines, each with the first
    line that writes it (None: question.wav, the user's own recording)."""
    earlier = EXAMPLES[:EXAMPLES.index(example)]
    writers = {"question.wav": None}
    for line in reversed(earlier):
        writers.update(dict.fromkeys(written(argv(line)), line))
    args = argv(example)
    return {name: writers[name] for name in args if name in writers and name not in written(args)}


@functools.cache  # asked at import for every line, and again by each line's test
def first_alike(example: str) -> str:
    """The first README line that runs the same command as `example` (itself when none before it
    does): the same subcommand and options as `playground` parses them, defaults filled in
    (`run --preset local ...` is `run ...`)."""
    from playground.cli import build_parser

    parse = build_parser().parse_args
    wanted = parse(argv(example)[1:])
    return next(line for line in EXAMPLES if parse(argv(line)[1:]) == wanted)


# The lines whose files later lines read, or that a later line repeats: each runs once, in the
# shared folder, for its own test and theirs.
WRITERS = {writer for example in EXAMPLES for writer in made_earlier(example).values() if writer} | {
    first for example in EXAMPLES if (first := first_alike(example)) != example}


class SharedFolder:
    """What the README's earlier lines leave for later ones, each made once per run in one
    folder: xdist workers take turns by a lock."""

    def __init__(self, shared: Path) -> None:
        self.folder = shared / "readme-folder"
        self.folder.mkdir(exist_ok=True)
        self._lock = shared / "readme-folder.lock"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self._lock, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def run_writer(self, writer: str) -> Path:
        """Runs `writer` (a line of WRITERS) in the shared folder unless it already ran there."""
        with self._locked():
            self._run_writer(writer)
        return self.folder

    def _run_writer(self, writer: str) -> None:
        done = self.folder / f".ran-{EXAMPLES.index(writer)}"
        if not done.exists():
            run_example(argv(writer), self.folder)
            done.touch()

    def fill(self, folder: Path, example: str) -> None:
        """Copies into `folder` the files of earlier lines that `example` reads."""
        with self._locked():
            for name, writer in made_earlier(example).items():
                if writer is not None:
                    self._run_writer(writer)
                elif not (self.folder / name).exists():
                    write_wav(self.folder / name, silence(0.5), speech("What time do you open tomorrow?"), silence(1.5))
        for name in made_earlier(example):
            shutil.copy(self.folder / name, folder / name)


@pytest.fixture(scope="session")
def readme_folder(tmp_path_factory) -> SharedFolder:
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # the run's folder, above each worker's own
    return SharedFolder(shared)


def test_the_readme_shows_the_commands_a_newcomer_needs():
    assert len(EXAMPLES) >= 10 and any(" run " in f" {line} " for line in EXAMPLES)
    assert any(" --trace " in line for line in EXAMPLES) and any(" call " in line for line in EXAMPLES)


def uses_the_sound_device(example: str) -> bool:
    """A live microphone hears whatever another test plays, and playback on a busy machine falls
    behind real time (the turn then fails: the device "stopped playing"): both run alone."""
    args = argv(example)
    plays = args[1] in ("run", "replay", "bench") and not {"--no-audio", "--audio"} & set(args)
    return "--mic" in args or plays


def with_marks(index: int, example: str):
    # serial: on the sound device, or reading what such a line writes (its run comes with it)
    alone = uses_the_sound_device(example) or any(
        writer and uses_the_sound_device(writer) for writer in made_earlier(example).values())
    return pytest.param(example, marks=[pytest.mark.serial] if alone else [], id=example_id(index, example))


@pytest.mark.models
@pytest.mark.parametrize("example", [with_marks(i, e) for i, e in enumerate(EXAMPLES)])
def test_a_readme_example_runs_as_written(example, readme_folder, tmp_path):
    args = argv(example)
    if first_alike(example) in WRITERS:
        folder = readme_folder.run_writer(first_alike(example))
        for name in written(args):
            assert (folder / name).stat().st_size > 0, name
        return
    readme_folder.fill(tmp_path, example)
    before = {path.name: path.stat().st_mtime_ns for path in tmp_path.iterdir()}
    if args[1] in SERVERS:
        err = stop_server(start_server(args, tmp_path))
        assert "Traceback" not in err, f"{example}\n{err}"
        return
    if "--mic" in args:
        listen_then_stop(args, tmp_path)
        return
    agent = start_server([str(PLAYGROUND), "serve-agent"], tmp_path) if args[1] == "call" else None
    try:
        run_example(args, tmp_path)
    finally:
        if agent is not None:
            stop_server(agent)
    # what the example says it writes
    new = [path for path in tmp_path.iterdir() if before.get(path.name) != path.stat().st_mtime_ns]
    for name in written(args):
        assert (tmp_path / name).stat().st_size > 0 and tmp_path / name in new, name
    if args[1] == "export":
        assert any(path.suffix == ".json" and path.stat().st_size > 0 for path in new), sorted(before)
