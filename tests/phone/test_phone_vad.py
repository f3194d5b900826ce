"""Silero on a phone line: a carrier's silence between lines is exact digital zero, for as long as
the other side talks. A question after a long such silence must still be heard whole, and a
one-word answer is an utterance, on a line as on a microphone."""

from __future__ import annotations

import numpy as np
import pytest

from playground.audio.input import FRAME_SAMPLES, StreamResampler
from playground.core.presets import load_preset
from playground.phone.codec import FRAME_BYTES, RATE, resample, ulaw_decode, ulaw_encode
from playground.stt.vad import SileroVAD, SpeechDetector, SpeechEnd
from tests.speech import speech

pytestmark = pytest.mark.models


def speech_stretches(samples_8k: np.ndarray) -> list[float]:
    """What the agent's VAD finds in a caller's 8 kHz μ-law stream, fed frame by frame as on a call."""
    line = ulaw_decode(ulaw_encode(samples_8k)).astype(np.float32) / 32768
    to_16k = StreamResampler(RATE, 16000)
    audio = np.concatenate([to_16k(line[i:i + FRAME_BYTES]) for i in range(0, len(line), FRAME_BYTES)])
    vad, detector = SileroVAD(), SpeechDetector()
    found = []
    for i in range(0, len(audio) - FRAME_SAMPLES, FRAME_SAMPLES):
        result = detector.feed(vad.probability(audio[i:i + FRAME_SAMPLES]), i / 16)
        if isinstance(result, SpeechEnd):
            found.append(result.speech_ms)
    return found


def test_a_question_after_a_long_digital_silence_is_heard_whole(caller_voice):
    first = caller_voice.voice.speech("Hi, who is this?")
    question = caller_voice.voice.speech("And who are you?")
    silence = lambda seconds: np.zeros(round(RATE * seconds), dtype=np.int16)  # noqa: E731
    short_pause = speech_stretches(np.concatenate([silence(0.6), first, silence(0.5), question, silence(1.0)]))
    long_pause = speech_stretches(np.concatenate([silence(0.6), first, silence(15.0), question, silence(1.0)]))
    assert len(short_pause) == len(long_pause) == 2
    # the agent keeps an utterance of 250 ms or more; the 0.67 s question is heard as most of it
    assert long_pause[1] >= 500 and abs(long_pause[1] - short_pause[1]) <= 64


ONE_WORD_ANSWERS = ["Hi.", "Yes.", "No.", "Okay.", "Yeah.", "Sure.", "Nope.", "Bye.", "What?", "Stop.", "Hello?", "Thanks."]


def kept_utterances(audio_16k: np.ndarray, min_speech_ms: float) -> list[bool]:
    vad = SileroVAD()
    detector = SpeechDetector(min_speech_ms=min_speech_ms)
    found = []
    for i in range(0, len(audio_16k) - FRAME_SAMPLES, FRAME_SAMPLES):
        result = detector.feed(vad.probability(audio_16k[i:i + FRAME_SAMPLES]), i / 16)
        if isinstance(result, SpeechEnd):
            found.append(result.kept)
    return found


@pytest.mark.parametrize("word", ONE_WORD_ANSWERS)
def test_a_one_word_answer_is_an_utterance_on_a_microphone_and_on_a_phone_line(word):
    # "Hi." or "No." is a whole answer: the default min_speech_ms must not drop it as a cough
    min_speech_ms = load_preset("local").input.min_speech_ms
    spoken = np.concatenate([np.zeros(4800, np.int16), speech(word), np.zeros(12800, np.int16)])
    assert kept_utterances(spoken.astype(np.float32) / 32768, min_speech_ms) == [True]
    line = ulaw_decode(ulaw_encode(resample(spoken, 16000, RATE))).astype(np.float32) / 32768
    to_16k = StreamResampler(RATE, 16000)
    heard = np.concatenate([to_16k(line[i:i + FRAME_BYTES]) for i in range(0, len(line), FRAME_BYTES)])
    assert kept_utterances(heard, min_speech_ms) == [True]
