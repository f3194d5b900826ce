"""Silero on a phone line: a carrier's silence between lines is exact digital zero, for as long as
the other side talks. A question after a long such silence must still be heard whole, and a
one-word answer is an utterance on a microphone and, nearly always, on a line."""

from __future__ import annotations

import numpy as np
import pytest

from playground.audio.input import FRAME_SAMPLES, StreamResampler
from playground.core.presets import load_preset
from playground.phone.codec import FRAME_BYTES, RATE, resample, ulaw_decode, ulaw_encode
from playground.stt.vad import SileroVAD, SpeechDetector, SpeechEnd
from tests.speech import speech

pytestmark = pytest.mark.models


def over_the_line(samples_8k: np.ndarray) -> np.ndarray:
    """A caller's 8 kHz audio as the agent's VAD gets it: μ-law and back, resampled to 16 kHz frame by frame."""
    line = ulaw_decode(ulaw_encode(samples_8k)).astype(np.float32) / 32768
    to_16k = StreamResampler(RATE, 16000)
    return np.concatenate([to_16k(line[i:i + FRAME_BYTES]) for i in range(0, len(line), FRAME_BYTES)])


def utterances(audio_16k: np.ndarray, min_speech_ms: float = 150.0) -> list[SpeechEnd]:
    """What the VAD finds, fed frame by frame as on a call or a microphone."""
    vad, detector = SileroVAD(), SpeechDetector(min_speech_ms=min_speech_ms)
    found = []
    for i in range(0, len(audio_16k) - FRAME_SAMPLES, FRAME_SAMPLES):
        result = detector.feed(vad.probability(audio_16k[i:i + FRAME_SAMPLES]), i / 16)
        if isinstance(result, SpeechEnd):
            found.append(result)
    return found


def speech_stretches(samples_8k: np.ndarray) -> list[float]:
    return [end.speech_ms for end in utterances(over_the_line(samples_8k))]


def test_a_question_after_a_long_digital_silence_is_heard_whole(caller_voice):
    first = caller_voice.voice.speech("Hi, who is this?")
    question = caller_voice.voice.speech("And who are you?")
    # Both pauses are whole multiples of 160 ms, the line's 20 ms frames and the VAD's 32 ms ones,
    # so the question meets both frame grids at the same phase: Piper's speech differs from one
    # synthesis to the next, and at another phase Silero's verdict on it moves by a frame or two
    # (0.5 s against 15 s: 4 syntheses in 7 heard the question 32-64 ms apart, a CI run 96 ms).
    # The short pause is longer than end_silence_ms (500): at 0.5 s one synthesis in 7 ran the two
    # lines together as one utterance.
    silence = lambda seconds: np.zeros(round(RATE * seconds), dtype=np.int16)  # noqa: E731
    short_pause = speech_stretches(np.concatenate([silence(0.64), first, silence(0.64), question, silence(0.96)]))
    long_pause = speech_stretches(np.concatenate([silence(0.64), first, silence(15.04), question, silence(0.96)]))
    assert len(short_pause) == len(long_pause) == 2
    # after 15 s of digital silence the question is heard as most of it, as after a short pause
    # (within two 32 ms frames)
    question_ms = len(question) / RATE * 1000
    assert long_pause[1] >= question_ms / 2 and abs(long_pause[1] - short_pause[1]) <= 64


ONE_WORD_ANSWERS = ["Hi.", "Yes.", "No.", "Okay.", "Yeah.", "Sure.", "Nope.", "Bye.", "What?", "Stop.", "Hello?", "Thanks."]


def test_a_one_word_answer_is_an_utterance_on_a_microphone_and_on_a_phone_line():
    # "Hi." or "No." is a whole answer: the default min_speech_ms must not drop it as a cough.
    # (Piper's one-word answers have 160-450 ms of voiced speech; 250 ms used to drop "Hi.")
    min_speech_ms = load_preset("local").input.min_speech_ms
    on_the_line = {}
    for word in ONE_WORD_ANSWERS:
        spoken = np.concatenate([np.zeros(4800, np.int16), speech(word), np.zeros(12800, np.int16)])
        on_a_microphone = utterances(spoken.astype(np.float32) / 32768, min_speech_ms)
        assert [end.kept for end in on_a_microphone] == [True], (word, on_a_microphone)
        on_the_line[word] = utterances(over_the_line(resample(spoken, 16000, RATE)), min_speech_ms)
    # Over 8 kHz μ-law Silero scores a word lower, a sibilant most ("Sure." 0.4-0.7 against 0.9 on
    # a microphone), and may find only part of one ("No.": 128 ms): nearly every word is kept
    kept = [word for word, ends in on_the_line.items() if [end.kept for end in ends] == [True]]
    assert len(kept) >= len(ONE_WORD_ANSWERS) - 2, on_the_line
