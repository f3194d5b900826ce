"""Spoken turns end to end on the real models: WAV speech (Piper, made at test time) -> Silero VAD
-> faster-whisper -> the session's LLM -> Piper -> the real-time null output."""

from __future__ import annotations

import asyncio
import math
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from playground.audio.input import CuedInput
from playground.audio.output import open_output
from playground.core import events as ev
from playground.core.clock import now_ms
from playground.engine.voice import PlaybackMeter, VoiceLoop
from tests.audio.test_audio_output import portaudio_missing, tone  # noqa: F401 - portaudio_missing: a fixture
from tests.conftest import local_preset, open_test_session
from tests.speech import mostly_heard, noise, silence, speech, words, write_wav

QUESTION = "What is the capital of France?"


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


class Heard:
    """The spoken turns a VoiceLoop started: (transcript, task)."""

    def __init__(self) -> None:
        self.turns: list[tuple[str, asyncio.Task]] = []

    def __call__(self, text: str, task: asyncio.Task) -> None:
        self.turns.append((text, task))

    async def metrics(self):
        return [await task for _, task in self.turns]


async def start_listening(session, wav: Path, mode: str = "hands_free", speed: float = 1.0,
                          **overrides) -> tuple[VoiceLoop, Heard]:
    """A VoiceLoop on `session` fed by `wav` (playing from now on)."""
    config = session.preset.input
    for key, value in overrides.items():
        setattr(config, key, value)
    heard = Heard()
    voice = VoiceLoop(session, config, mode=mode, mic_file=str(wav), speed=speed, on_turn=heard)
    assert await voice.open(), voice.state.reason
    return voice, heard


async def until_played_out(voice: VoiceLoop, timeout: float = 90.0) -> None:
    try:
        async with asyncio.timeout(timeout):
            await voice.wait_input_end()
    finally:
        await voice.close()


async def listen_to(session, wav: Path, mode: str = "hands_free", speed: float = 1.0,
                    **overrides) -> tuple[VoiceLoop, Heard]:
    """Feeds `wav` through a VoiceLoop on `session` until it has played out and its turns are done."""
    voice, heard = await start_listening(session, wav, mode, speed, **overrides)
    await until_played_out(voice)
    return voice, heard


def turn_events(session, turn: int, type_: type[ev.TraceEvent]):
    return [e for e in session.trace.turn_events(turn) if isinstance(e, type_)]


@pytest.fixture
async def session():
    session = await open_test_session(local_preset())
    yield session
    await session.close()


async def test_a_spoken_question_becomes_a_turn_with_its_transcript_and_voice_metrics(session, tmp_path):
    wav = write_wav(tmp_path / "q.wav", silence(0.5), speech(QUESTION), silence(1.5))
    voice, heard = await listen_to(session, wav)
    [(text, _)] = heard.turns
    assert words(text) == words(QUESTION)
    [m] = await heard.metrics()
    assert m.status == "ok" and m.first_play is not None  # the agent answered aloud

    start = turn_events(session, 1, ev.TurnStart)[0]
    assert start.input == "voice" and start.text == text
    types = [type(e) for e in session.trace.turn_events(1)]
    assert types.index(ev.VadSpeechStart) < types.index(ev.VadSpeechEnd) < types.index(ev.SttFinal)
    assert types.index(ev.SttFinal) < types.index(ev.LlmRequest)
    speech_start = turn_events(session, 1, ev.VadSpeechStart)[0]
    speech_end = turn_events(session, 1, ev.VadSpeechEnd)[0]
    # t0 is the end of speech detected; the speech itself ended end_silence_ms (+ up to 2 frames) earlier
    assert speech_end.t_ms == 0 and speech_end.trigger == "silence"
    assert 500 <= m.vad_end <= 600
    assert speech_start.onset_ms < speech_start.t_ms < speech_end.last_voiced_ms < 0
    assert 1500 < speech_end.speech_ms < 3000  # Piper says the question in ~2 s
    assert 0 < m.stt == turn_events(session, 1, ev.SttFinal)[0].t_ms
    assert m.stt <= m.llm_ttft <= m.first_play
    assert m.user_latency == pytest.approx(m.vad_end + m.first_play)
    assert voice.state.transcript == text and voice.state.mic == "ended"
    assert [e.status for e in session.trace.events if isinstance(e, ev.Mic)] == ["listening", "ended"]


async def test_silence_only_makes_no_turn(session, tmp_path):
    wav = write_wav(tmp_path / "silence.wav", silence(3.0))
    voice, heard = await listen_to(session, wav)
    assert heard.turns == [] and session.turn_count == 0
    assert voice.state.ignored == 0


async def test_noise_makes_no_turn(session, tmp_path):
    # Steady hiss at -26 dBFS (a fan, a bad line) is not speech: the VAD never starts, so no
    # turn (a turn answering noise would interrupt and confuse the caller).
    wav = write_wav(tmp_path / "noise.wav", noise(4.0, amplitude=0.05))
    _, heard = await listen_to(session, wav)
    assert heard.turns == [] and session.turn_count == 0
    assert not any(isinstance(e, ev.SttFinal) for e in session.trace.events)


async def test_two_utterances_separated_by_a_pause_make_two_turns(session, tmp_path):
    first, second = "Hello, can you hear me?", "Please tell me the time."
    wav = write_wav(tmp_path / "two.wav", silence(0.3), speech(first), silence(1.5), speech(second), silence(1.2))
    _, heard = await listen_to(session, wav)
    assert [words(text) for text, _ in heard.turns] == [words(first), words(second)]
    first_turn, second_turn = await heard.metrics()
    # (the second utterance may start while the first reply plays: then it cuts it, a barge-in)
    assert second_turn.status == "ok"
    assert all(m.stt is not None and m.vad_end is not None for m in (first_turn, second_turn))


@pytest.mark.serial  # a time bound
async def test_speech_during_the_reply_cuts_it_within_150_ms():
    session = await open_test_session(local_preset("llm.max_tokens=120"))
    story = "Tell me a long story about a lighthouse keeper."
    stop = "Stop, that is enough."
    playing = threading.Event()

    def on_event(event: ev.TraceEvent) -> None:
        if isinstance(event, ev.PlayStart) and event.turn == 1:
            threading.Timer(0.5, playing.set).start()  # half a second into the reply
        elif isinstance(event, ev.TurnCancelled) and event.turn == 1:
            # the "stop" only has to be answered: a short reply, not 120 tokens played in real time
            session.llm.config = replace(session.llm.config, max_tokens=12)

    session.trace.subscribe(on_event)
    heard = Heard()
    source = CuedInput([(None, np.concatenate([silence(0.3), speech(story), silence(1.0)])),
                        (playing, np.concatenate([speech(stop), silence(1.2)]))])
    voice = VoiceLoop(session, session.preset.input, mode="hands_free", on_turn=heard, source=source)
    try:
        assert await voice.open()
        await until_played_out(voice, timeout=90)
    finally:
        await session.close()
    assert len(heard.turns) == 2, heard.turns
    assert mostly_heard(heard.turns[0][0], story) and mostly_heard(heard.turns[1][0], stop), heard.turns
    first, second = await heard.metrics()
    assert (first.status, second.status) == ("cancelled", "ok")
    cancelled = turn_events(session, 1, ev.TurnCancelled)[0]
    assert cancelled.reason.startswith("barge-in")
    # from the frame that confirmed the speech start to LLM, TTS and playback all stopped
    assert cancelled.stop_ms < 150
    assert cancelled.played.chunks and cancelled.played.ms >= 400
    assert any(e.cut for e in turn_events(session, 1, ev.PlayEnd))
    assert turn_events(session, 2, ev.VadSpeechStart)[0].barge_in == 1
    assert voice.state.barge_ins == 1


async def test_a_one_minute_monologue_is_transcribed_in_bounded_memory(session, tmp_path):
    sentences = [
        "The harbour was quiet in the early morning, and the boats rocked gently on the grey water",
        "A fisherman walked along the pier, carrying a basket of nets and a flask of coffee",
        "He had worked on this coast for forty years and knew every rock under the waves",
        "The gulls followed him, hoping for a piece of bread or a small fish",
        "At the end of the pier his daughter was already waiting with the engine running",
        "Together they checked the weather, the fuel and the radio before they left",
        "The sea was calm, but the forecast spoke of wind in the afternoon",
        "They decided to fish near the island and to come back before lunch",
    ]
    monologue = speech(". ".join(sentences) + ".")
    minute = [monologue] * max(1, round(60 * 16000 / len(monologue)))
    seconds = sum(len(a) for a in minute) / 16000
    assert seconds >= 55
    wav = write_wav(tmp_path / "monologue.wav", silence(0.3), *minute, silence(3.0))
    # fed 3x faster than real time to keep the test short; the VAD and STT path is the same
    voice, heard = await start_listening(session, wav, speed=3.0)
    loaded = rss_mb()  # the models are loaded: what follows is the cost of listening and transcribing
    peak = [loaded]
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.wait(0.1) and not heard.turns:  # until the reply's LLM and TTS work starts
            peak.append(rss_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        await until_played_out(voice, timeout=150)
    finally:
        sampling.set()
        sampler.join()
    [(text, _)] = heard.turns
    assert mostly_heard(text, " ".join(sentences), share=0.8)
    assert turn_events(session, 1, ev.SttFinal)[0].audio_ms >= seconds * 1000
    grown = max(peak) - loaded
    print(f"RSS: {loaded:.0f} MB with the models loaded, peak {max(peak):.0f} MB while listening (+{grown:.0f} MB)")
    # The minute's audio itself is 3.8 MB (an utterance is cut at MAX_UTTERANCE_S = 2 minutes); the
    # rest is Whisper's passes (features, CTranslate2 buffers) and the threads' allocator arenas.
    assert grown < 200, f"RSS grew by {grown:.0f} MB while listening to one minute"


async def test_push_to_talk_takes_what_was_said_between_key_down_and_up(session, tmp_path):
    question = "Where is the nearest train station?"
    said = speech(question)
    wav = write_wav(tmp_path / "ptt.wav", silence(0.6), said, silence(2.5))
    heard = Heard()
    voice = VoiceLoop(session, session.preset.input, mode="push_to_talk", mic_file=str(wav), on_turn=heard)
    assert await voice.open()  # the file starts playing now, in real time
    try:
        await asyncio.sleep(0.3)
        voice.start_listening()
        assert voice.state.key_down
        await asyncio.sleep(0.3 + len(said) / 16000 + 0.7)  # key up 0.7 s after the speech
        voice.stop_listening()
        async with asyncio.timeout(60):
            await voice.wait_input_end()
    finally:
        await voice.close()
    [(text, _)] = heard.turns
    assert mostly_heard(text, question)
    end = turn_events(session, 1, ev.VadSpeechEnd)[0]
    assert end.trigger == "key"
    [m] = await heard.metrics()
    # t0 is the key release; the speech ended ~0.7 s before it
    assert m.status == "ok" and 500 < m.vad_end < 1000


async def test_no_microphone_leaves_typed_input_working(session):
    voice = VoiceLoop(session, session.preset.input, mode="hands_free")
    voice.config.device = "no such microphone xyz"
    assert not await voice.open()
    assert voice.state.mic == "unavailable"
    assert "no such microphone xyz" in voice.state.reason or "PortAudio" in voice.state.reason
    [mic] = [e for e in session.trace.events if isinstance(e, ev.Mic)]
    assert mic.status == "unavailable" and mic.reason == voice.state.reason
    await voice.close()
    metrics = await session.run_turn("Hello?")
    assert metrics.status == "ok" and metrics.first_play is not None


@pytest.mark.usefixtures("portaudio_missing")
async def test_without_portaudio_the_mic_is_unavailable_and_says_what_to_install(session):
    voice = VoiceLoop(session, session.preset.input, mode="hands_free")
    assert not await voice.open()
    assert "libportaudio2" in voice.state.reason
    await voice.close()


async def test_the_echo_gate_meter_taps_what_the_output_plays():
    """The meter sees each piece the session's output is given and each stop, as a tap on the
    real output (the output itself stays the session's)."""
    output = await open_output("null")
    meter = PlaybackMeter(tail_ms=100.0)
    output.add_tap(meter)
    try:
        output.play(tone(440, 0.5, 22050, amplitude=0.5), 22050, "piece")
        level = meter.level_at(now_ms() + 100.0)
        assert level is not None and abs(level - 10 * math.log10(0.125)) < 1.0  # a sine at half scale
        output.stop()
        assert meter.level_at(now_ms()) is None
        output.remove_tap(meter)
        output.play(tone(440, 0.2, 22050), 22050, "unseen")
        assert meter.level_at(now_ms() + 50.0) is None
    finally:
        await output.close()
