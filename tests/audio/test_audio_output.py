"""PlaybackQueue, NullOutput, WAV capture, resampling and the no-PortAudio fallback."""

from __future__ import annotations

import asyncio
import builtins
import threading
import time
import wave

import numpy as np
import pytest

from playground.audio import (
    CUT,
    END,
    START,
    AudioDeviceError,
    NullOutput,
    PlaybackQueue,
    UnpacedOutput,
    import_sounddevice,
    list_devices,
    open_output,
    resample,
)


def tone(freq: float, seconds: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return np.rint(amplitude * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def peak_frequency(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[np.argmax(spectrum)])


def read_wav(path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth()) == (1, 2)
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2"), wav.getframerate()


class Recorder:
    """Collects an output's reports, noting the thread each one arrived on."""

    def __init__(self) -> None:
        self.reports: list[tuple[str, object, float]] = []
        self.threads: set[int] = set()
        self.cut = asyncio.Event()

    def __call__(self, kind: str, mark: object, t_ms: float) -> None:
        self.reports.append((kind, mark, t_ms))
        self.threads.add(threading.get_ident())
        if kind == CUT:
            self.cut.set()

    def kinds(self) -> list[tuple[str, object]]:
        return [(kind, mark) for kind, mark, _ in self.reports]


# --- PlaybackQueue, driven directly as the audio thread would --------------------------

def queue_with_log(rate: int = 1000) -> tuple[PlaybackQueue, list]:
    log: list = []
    return PlaybackQueue(rate, listener=log.append), log


def test_fill_copies_in_order_reports_marks_and_zero_fills_underflow():
    playback, log = queue_with_log()
    playback.enqueue(np.arange(1, 6, dtype=np.int16), 1000, "a")
    playback.enqueue(np.arange(6, 9, dtype=np.int16), 1000, "b")
    out = np.full((4, 1), 99, dtype=np.int16)  # PortAudio's shape

    playback.fill(out)
    assert out[:, 0].tolist() == [1, 2, 3, 4]
    assert [(r.kind, r.mark) for r in log] == [(START, "a")]
    playback.fill(out)
    assert out[:, 0].tolist() == [5, 6, 7, 8]
    assert [(r.kind, r.mark) for r in log] == [(START, "a"), (END, "a"), (START, "b"), (END, "b")]
    playback.fill(out)
    assert out[:, 0].tolist() == [0, 0, 0, 0]
    assert len(log) == 4


def test_clear_cuts_the_playing_mark_and_silently_drops_unstarted_ones():
    playback, log = queue_with_log()
    playback.enqueue(np.ones(10, dtype=np.int16), 1000, "playing")
    playback.enqueue(np.ones(10, dtype=np.int16), 1000, "queued")
    out = np.empty(4, dtype=np.int16)
    playback.fill(out)
    playback.clear()
    playback.enqueue(np.full(2, 7, dtype=np.int16), 1000, "after")
    playback.fill(out)
    assert out.tolist() == [7, 7, 0, 0]
    assert [(r.kind, r.mark) for r in log] == [
        (START, "playing"), (CUT, "playing"), (START, "after"), (END, "after")]


def test_segment_enqueued_after_a_clear_during_fill_still_plays():
    playback, log = queue_with_log()

    def clear_and_enqueue_during_fill(report):
        # runs inside fill(), like a barge-in landing while the audio thread copies
        log.append(report)
        if report.mark == "old" and report.kind == START:
            playback.clear()
            playback.enqueue(np.full(3, 5, dtype=np.int16), 1000, "new")

    playback.listener = clear_and_enqueue_during_fill
    playback.enqueue(np.full(2, 9, dtype=np.int16), 1000, "old")
    out = np.empty(8, dtype=np.int16)
    playback.fill(out)
    assert out.tolist() == [9, 9, 5, 5, 5, 0, 0, 0]
    assert [(r.kind, r.mark) for r in log] == [(START, "old"), (END, "old"), (START, "new"), (END, "new")]


def test_capture_receives_only_the_samples_handed_over():
    class ListCapture:
        def __init__(self):
            self.blocks: list[np.ndarray] = []

        def write(self, samples):
            self.blocks.append(samples.copy())

    capture = ListCapture()
    playback = PlaybackQueue(1000, capture=capture)
    playback.enqueue(np.array([3, 4, 5], dtype=np.int16), 1000, "m")
    out = np.empty(8, dtype=np.int16)
    playback.fill(out)
    playback.fill(out)  # pure underflow: nothing to capture
    assert [b.tolist() for b in capture.blocks] == [[3, 4, 5]]


def test_enqueue_copies_the_callers_buffer_and_converts_float():
    playback, _ = queue_with_log()
    buffer = np.array([1, 2], dtype=np.int16)
    playback.enqueue(buffer, 1000, "int")
    buffer[:] = 0
    playback.enqueue(np.array([0.5, -1.0]), 1000, "float")
    out = np.empty(4, dtype=np.int16)
    playback.fill(out)
    assert out.tolist() == [1, 2, 16384, -32767]


def test_resample_keeps_the_length_ratio_and_the_frequency():
    source = tone(440, 1.0, 22050)
    resampled = resample(source, 22050, 48000)
    assert resampled.dtype == np.int16
    assert abs(len(resampled) - 48000) <= 1
    assert peak_frequency(resampled, 48000) == pytest.approx(440, abs=2)


# --- NullOutput: real threads, real time ------------------------------------------------

async def test_null_output_plays_in_real_time():
    output = NullOutput(22050)
    await output.open()
    try:
        started = time.perf_counter()
        output.play(tone(440, 1.0, 22050), 22050, "one second")
        await asyncio.wait_for(output.drain(), 5)
        elapsed = time.perf_counter() - started
    finally:
        await output.close()
    # the last 10 ms block is handed over at ~0.99 s
    assert 0.9 <= elapsed <= 1.2


async def test_reports_arrive_on_the_loop_thread_in_order():
    output = NullOutput(22050)
    recorder = Recorder()
    output.set_listener(recorder)
    await output.open()
    try:
        marks = [(1, i) for i in range(3)]
        for mark in marks:
            output.play(tone(300, 0.1, 22050), 22050, mark)
        await asyncio.wait_for(output.drain(), 5)
    finally:
        await output.close()

    assert recorder.threads == {threading.get_ident()}
    assert recorder.kinds() == [(kind, mark) for mark in marks for kind in (START, END)]
    times = [t for _, _, t in recorder.reports]
    assert times == sorted(times)
    for i in range(3):
        played_ms = times[2 * i + 1] - times[2 * i]
        assert played_ms == pytest.approx(100, abs=25)


async def test_stop_cuts_playback_within_100_ms_and_capture_matches(tmp_path):
    wav_path = tmp_path / "played.wav"
    output = NullOutput(22050, wav_path=wav_path)
    recorder = Recorder()
    output.set_listener(recorder)
    await output.open()
    audio = tone(220, 2.0, 22050)
    try:
        output.play(audio, 22050, "long")
        output.play(tone(220, 0.5, 22050), 22050, "never started")
        drained = asyncio.ensure_future(output.drain())
        await asyncio.sleep(0.3)

        stopped_at = time.perf_counter()
        output.stop()
        assert time.perf_counter() - stopped_at < 0.005  # the cancel path itself is immediate
        await asyncio.wait_for(recorder.cut.wait(), 1)
        assert time.perf_counter() - stopped_at < 0.1
        await asyncio.wait_for(drained, 0.1)  # pending drains return on stop
        await asyncio.sleep(0.05)  # nothing more may play after the cut
    finally:
        await output.close()

    assert recorder.kinds() == [(START, "long"), (CUT, "long")]
    played, rate = read_wav(wav_path)
    assert rate == 22050
    assert 0.25 * rate <= len(played) <= 0.45 * rate
    np.testing.assert_array_equal(played, audio[:len(played)])


async def test_wav_capture_holds_exactly_the_played_samples(tmp_path):
    wav_path = tmp_path / "played.wav"
    rng = np.random.default_rng(7)
    segments = [rng.integers(-20000, 20000, size=n, dtype=np.int16) for n in (2000, 1, 3333)]
    output = NullOutput(22050, wav_path=wav_path)
    await output.open()
    try:
        for i, segment in enumerate(segments):
            output.play(segment, 22050, i)
        await asyncio.wait_for(output.drain(), 5)
        await asyncio.sleep(0.05)  # underflow blocks must not reach the file
    finally:
        await output.close()
    played, rate = read_wav(wav_path)
    assert rate == 22050
    np.testing.assert_array_equal(played, np.concatenate(segments))


async def test_null_output_resamples_to_its_device_rate(tmp_path):
    wav_path = tmp_path / "played.wav"
    output = NullOutput(48000, wav_path=wav_path)
    await output.open()
    try:
        output.play(tone(440, 0.5, 22050), 22050, "tone")
        await asyncio.wait_for(output.drain(), 5)
    finally:
        await output.close()
    played, rate = read_wav(wav_path)
    assert rate == 48000
    assert abs(len(played) - 24000) <= 1
    assert peak_frequency(played, 48000) == pytest.approx(440, abs=3)


async def test_open_output_null_spec_needs_no_portaudio():
    warnings: list[str] = []
    output = await open_output("null", warn=warnings.append)
    try:
        assert isinstance(output, NullOutput)
        assert output.name == "null output"
        assert warnings == []
    finally:
        await output.close()


# --- fallbacks ---------------------------------------------------------------------------

@pytest.fixture
def portaudio_missing(monkeypatch):
    """`import sounddevice` fails the way it does without libportaudio2."""
    real_import = builtins.__import__

    def failing_import(name, *args, **kwargs):
        if name == "sounddevice":
            raise OSError("PortAudio library not found")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", failing_import)


async def test_missing_portaudio_falls_back_to_null_with_one_warning(portaudio_missing):
    warnings: list[str] = []
    output = await open_output("default", warn=warnings.append)
    try:
        assert isinstance(output, NullOutput)
        assert len(warnings) == 1
        assert "PortAudio library not found" in warnings[0]
        assert "libportaudio2" in warnings[0]
        assert "null output" in warnings[0]
    finally:
        await output.close()
    assert list_devices() == []


def portaudio_available() -> bool:
    try:
        import_sounddevice()
    except AudioDeviceError:
        return False
    return True


@pytest.mark.skipif(not portaudio_available(), reason="PortAudio library not found (Debian libportaudio2)")
async def test_unknown_device_falls_back_to_null_with_one_warning():
    warnings: list[str] = []
    output = await open_output("no such device xyz", warn=warnings.append)
    try:
        assert isinstance(output, NullOutput)
        assert len(warnings) == 1
        assert "no such device xyz" in warnings[0]
        assert "playground devices" in warnings[0]
    finally:
        await output.close()


async def test_the_unpaced_output_takes_audio_as_fast_as_it_comes_and_reports_it():
    output = await open_output("unpaced")
    recorder = Recorder()
    output.set_listener(recorder)
    try:
        assert isinstance(output, UnpacedOutput) and not output.paced
        started = time.perf_counter()
        for i in range(3):
            output.play(tone(440, 2.0, 22050), 22050, i)
        await output.drain()
        elapsed = time.perf_counter() - started
    finally:
        await output.close()
    assert elapsed < 1.0  # 6 s of audio
    assert recorder.kinds() == [(START, 0), (END, 0), (START, 1), (END, 1), (START, 2), (END, 2)]
