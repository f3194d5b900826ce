"""Audio input (WAV file path, resampling, errors), the streaming Silero VAD and the speech detector."""

from __future__ import annotations

import argparse
import io
import itertools
import time

import numpy as np
import pytest

from playground.audio.input import (
    FRAME_MS,
    FRAME_SAMPLES,
    SAMPLE_RATE,
    AudioInput,
    MicUnavailable,
    WavFileInput,
    list_input_devices,
    open_input,
)
from playground.console import Console
from playground.commands.devices import COMMAND
from playground.stt.vad import SileroVAD, SpeechDetector, SpeechEnd, SpeechStart
from playground.stt.whisper import STTError, find_model
from tests.speech import noise, silence, speech, write_wav


def tone(freq: float, seconds: float, rate: int) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return np.rint(0.5 * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def test_a_wav_file_is_fed_in_real_time_as_16_khz_frames(tmp_path):
    wav = write_wav(tmp_path / "tone.wav", tone(440, 1.0, 44100), rate=44100)
    source = open_input(mic_file=wav)
    started = time.perf_counter()
    frames = list(source.frames())
    elapsed = time.perf_counter() - started
    assert 0.9 <= elapsed <= 1.5  # paced like a microphone, not read at once
    assert all(len(f.samples) == FRAME_SAMPLES and f.samples.dtype == np.float32 for f in frames)
    assert abs(len(frames) * FRAME_SAMPLES - SAMPLE_RATE) <= 2 * FRAME_SAMPLES  # resampled 44.1 -> 16 kHz
    audio = np.concatenate([f.samples for f in frames])
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    assert np.fft.rfftfreq(len(audio), 1 / SAMPLE_RATE)[np.argmax(spectrum)] == pytest.approx(440, abs=3)
    times = [f.t_ms for f in frames]
    assert times == sorted(times)
    assert frames[len(frames) // 2].level_db == pytest.approx(-9.03, abs=0.3)  # RMS of a 0.5 sine: 0.5 / sqrt(2)


def test_a_file_s_frames_are_stamped_when_a_microphone_would_have_captured_them(tmp_path):
    # however late the pacing thread wakes (a loaded machine), the frames are a frame apart
    wav = write_wav(tmp_path / "speech.wav", silence(1.0))
    frames = list(open_input(mic_file=wav).frames())
    steps = np.diff([f.t_ms for f in frames])
    assert steps == pytest.approx(np.full(len(steps), FRAME_MS), abs=0.01)


def test_frames_from_bunched_or_backward_stamps_stay_in_order():
    # a late audio callback or a network burst hands blocks over at once, their stamps out of step
    source = AudioInput("bunched", SAMPLE_RATE)
    block = np.zeros(FRAME_SAMPLES * 2, dtype=np.float32)
    for stamp in (1000.0, 1000.0, 990.0, 1200.0):
        source._put(block, stamp)
    times = [f.t_ms for f in itertools.islice(source.frames(), 8)]
    assert all(b > a for a, b in zip(times, times[1:]))
    assert times[-1] == 1200.0 and times[-2] == 1200.0 - FRAME_MS  # a stream that keeps up is not moved


def test_close_ends_the_frames_of_a_file_at_once(tmp_path):
    source = WavFileInput(write_wav(tmp_path / "long.wav", silence(30.0)))
    source.start()
    frames = source.frames()
    next(frames)
    source.close()
    assert len(list(frames)) < 10


@pytest.mark.parametrize("content, reason", [(b"not audio at all", "not a WAV file"), (None, "no such file")])
def test_a_bad_mic_file_is_named_with_the_reason(tmp_path, content, reason):
    path = tmp_path / "speech.wav"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(MicUnavailable, match=f"{path}.*{reason}"):
        open_input(mic_file=path)


def test_streaming_vad_matches_faster_whispers_whole_file_scores():
    from faster_whisper.vad import get_vad_model

    # a room's quiet, not digital zeros: the streaming VAD skips exact zeros (next test)
    quiet = noise(0.5, amplitude=0.002)
    audio = np.concatenate([quiet, speech("Good morning, is anyone there?"), quiet])
    audio = audio[:len(audio) // FRAME_SAMPLES * FRAME_SAMPLES].astype(np.float32) / 32768
    whole = get_vad_model()(audio).reshape(-1)
    vad = SileroVAD()
    streamed = [vad.probability(audio[i:i + FRAME_SAMPLES]) for i in range(0, len(audio), FRAME_SAMPLES)]
    np.testing.assert_allclose(streamed, whole, atol=1e-4)
    assert max(streamed) > 0.9 and max(streamed[:10]) < 0.2  # speech is found, leading silence is not


def test_digital_silence_scores_zero_and_leaves_the_next_speech_to_be_heard():
    vad = SileroVAD()
    zeros = np.zeros(FRAME_SAMPLES, dtype=np.float32)
    assert all(vad.probability(zeros) == 0.0 for _ in range(int(15_000 / FRAME_MS)))  # 15 s of a muted line
    said = speech("Good morning, is anyone there?").astype(np.float32) / 32768
    said = said[:len(said) // FRAME_SAMPLES * FRAME_SAMPLES]
    scores = [vad.probability(said[i:i + FRAME_SAMPLES]) for i in range(0, len(said), FRAME_SAMPLES)]
    assert max(scores) > 0.9


def run_detector(detector: SpeechDetector, probabilities: list[float]) -> list[tuple[int, object]]:
    return [(i, r) for i, p in enumerate(probabilities) if (r := detector.feed(p, (i + 1) * FRAME_MS)) is not None]


def test_detector_starts_after_two_voiced_frames_and_ends_after_the_silence():
    detector = SpeechDetector(threshold=0.5, end_silence_ms=500, min_speech_ms=250)
    events = run_detector(detector, [0.9, 0.1, 0.9, 0.9, 0.8, 0.9, 0.4, 0.9, 0.9, 0.9] + [0.05] * 20)
    (i_start, start), (_, end) = events
    assert isinstance(start, SpeechStart) and i_start == 3  # a single voiced frame (a click) started nothing
    assert start.onset_ms == 3 * FRAME_MS
    assert isinstance(end, SpeechEnd) and end.kept
    assert end.last_voiced_ms == 10 * FRAME_MS
    assert end.t_ms - end.last_voiced_ms >= 500 and end.t_ms - end.last_voiced_ms < 500 + FRAME_MS
    assert end.speech_ms == pytest.approx(8 * FRAME_MS)


def test_detector_keeps_no_speech_shorter_than_min_speech_ms():
    detector = SpeechDetector(threshold=0.5, end_silence_ms=300, min_speech_ms=250)
    [(_, start), (_, end)] = run_detector(detector, [0.9] * 4 + [0.0] * 20)
    assert isinstance(start, SpeechStart) and isinstance(end, SpeechEnd)
    assert end.speech_ms == pytest.approx(4 * FRAME_MS) and not end.kept


def test_the_packaged_whisper_model_is_found_and_an_unknown_one_named():
    assert (find_model("tiny.en") / "model.bin").is_file()
    with pytest.raises(STTError, match="unknown model 'huge'"):
        find_model("huge")


def test_devices_lists_inputs_and_outputs():
    out, err = io.StringIO(), io.StringIO()
    status = COMMAND.run(argparse.Namespace(), Console(out, err))
    if status != 0:
        assert "no sound devices" in err.getvalue() and "libportaudio2" in err.getvalue()
        return
    text = out.getvalue()
    assert "input devices" in text and "output devices" in text
    for device in list_input_devices():
        assert f"{device['index']:>3}  {device['name']}" in text
