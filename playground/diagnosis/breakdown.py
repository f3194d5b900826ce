"""Latency attribution that adds up: what the user waited for, cut into stages that sum to it.

A typed turn waits from t0 to its first sound; a spoken turn from the user's last voiced frame
(before t0) to its first sound. The stages are the intervals between the turn's milestones, in
pipeline order, so they add up to the wait by construction:

    endpointing      last voiced frame -> end of speech detected (t0)    input.end_silence_ms
    STT              t0 -> final transcript                              input.stt_model
    LLM first token  -> first content token (LLM_TTFT)                   llm.model
    chunker wait     -> first chunk emitted (TTFS)                       chunker.strategy / deadline_ms
    hand-off         -> first text sent to TTS (TTFT_TTS)                tts.persistent
    TTS first audio  -> first audio received (TTFA)                      tts.model
    to playback      -> first sample to the device (FIRST_PLAY)          audio.output
    leading silence  -> first audible sample on the device               tts.voice
    device latency   -> heard (FIRST_SOUND)                              audio.output

Where a milestone was not measured (a REST fallback that reported no audio) the breakdown
stops at the last one reached and says so. A phone caller's turn (`playground call`) waits from
its end of speech to the agent's first audible sample: endpointing, agent response and the
network leg as the agent's own trace splits them (`call.agent_turn`), then leading silence.
"""

from __future__ import annotations

from dataclasses import dataclass

from playground.diagnosis.evidence import TurnEvidence


@dataclass(frozen=True)
class Stage:
    key: str
    label: str
    ms: float
    start_ms: float  # on the turn's clock (ms after t0)
    end_ms: float
    setting: str | None  # the setting that owns it (None: no setting changes it)


@dataclass(frozen=True)
class Breakdown:
    turn: int
    start_label: str  # what the wait starts at
    end_label: str  # ... and what it ends at
    stages: list[Stage]
    complete: bool  # it reaches what the user hears
    missing: str | None = None  # why it stops short

    @property
    def start_ms(self) -> float:
        return self.stages[0].start_ms if self.stages else 0.0

    @property
    def total_ms(self) -> float:
        return sum(s.ms for s in self.stages)

    def stage(self, key: str) -> Stage | None:
        return next((s for s in self.stages if s.key == key), None)

    def ms(self, key: str) -> float | None:
        stage = self.stage(key)
        return None if stage is None else stage.ms

    def largest(self, stages: list[Stage] | None = None) -> Stage | None:
        return max(stages if stages is not None else self.stages, key=lambda s: s.ms, default=None)

    def explaining(self, metric: str) -> list[Stage]:
        """The stages a metric (a `TurnMetrics` key) is the sum of: those from t0 to its milestone
        (USER_LATENCY: from the last voiced frame). Empty when the metric is no milestone here."""
        end_key = MILESTONE_STAGE.get(metric)
        if end_key is None or self.stage(end_key) is None:
            return []
        chosen = []
        for stage in self.stages:
            if metric == "user_latency" or stage.start_ms >= 0.0:
                chosen.append(stage)
            if stage.key == end_key:
                return chosen
        return chosen


# (key, label, the milestone that ends it, the setting that owns it)
TURN_STAGES = (
    ("endpointing", "endpointing", "speech_end", "input.end_silence_ms"),
    ("stt", "STT", "stt", "input.stt_model"),
    ("llm", "LLM first token", "llm_ttft", "llm.model"),
    ("chunker", "chunker wait", "ttfs", "chunker.strategy"),
    ("handoff", "hand-off", "ttft_tts", "tts.persistent"),
    ("tts", "TTS first audio", "ttfa", "tts.model"),
    ("to_playback", "to playback", "first_play", "audio.output"),
    ("silence", "leading silence", "audible", "tts.voice"),
    ("device", "device latency", "first_sound", "audio.output"),
)
STAGE_LABELS = {key: label for key, label, _, _ in TURN_STAGES}
CALL_STAGE_LABELS = {"endpointing": "endpointing (agent)", "agent": "agent response", "network": "network leg",
                     "agent_network": "agent response + network", "residual": "frame cadence",
                     "silence": "leading silence"}
# A metric -> the stage its milestone ends.
MILESTONE_STAGE = {"vad_end": "endpointing", "stt": "stt", "llm_ttft": "llm", "ttfs": "chunker", "chunker_wait": "chunker",
                   "ttft_tts": "handoff", "handoff": "handoff", "ttfa": "tts", "first_play": "to_playback",
                   "user_latency": "to_playback", "first_sound": "device"}
MILESTONE_LABELS = {"speech_end": "end of speech", "stt": "STT", "llm_ttft": "LLM_TTFT", "ttfs": "TTFS",
                    "ttft_tts": "TTFT_TTS", "ttfa": "TTFA", "first_play": "FIRST_PLAY",
                    "audible": "first audible sample", "first_sound": "FIRST_SOUND"}


def chunker_setting(strategy: str | None) -> str:
    """Who owns the chunker's wait: the deadline for `adaptive` (it cuts when none came in time),
    the strategy otherwise (it waits for its boundaries however long)."""
    return "chunker.deadline_ms" if strategy == "adaptive" else "chunker.strategy"


def _milestones(x: TurnEvidence) -> dict[str, float | None]:
    m = x.metrics
    speech_end = x.speech_end.source.t_ms if x.speech_end is not None else None
    audible = None
    if m.first_sound is not None and x.sound is not None:
        audible = m.first_sound - x.sound.device_latency_ms
    return {"speech_end": speech_end, "stt": m.stt, "llm_ttft": m.llm_ttft, "ttfs": m.ttfs, "ttft_tts": m.ttft_tts,
            "ttfa": m.ttfa, "first_play": m.first_play, "audible": audible, "first_sound": m.first_sound}


def turn_breakdown(x: TurnEvidence) -> Breakdown:
    if x.call is not None:
        return _call_breakdown(x)
    milestones = _milestones(x)
    spoken = x.speech_end is not None
    at = x.speech_end.last_voiced_ms if spoken else 0.0
    stages: list[Stage] = []
    missing = None
    reached = "t0"
    for key, label, milestone, setting in TURN_STAGES:
        if key in ("endpointing", "stt") and not spoken:
            continue
        end = milestones[milestone]
        if end is None:
            missing = f"no {MILESTONE_LABELS[milestone]} measured"
            break
        if key == "chunker":
            setting = chunker_setting(x.strategy)
        stages.append(Stage(key, label, end - at, at, end, setting))
        at, reached = end, MILESTONE_LABELS[milestone]
    return Breakdown(x.turn, "last voiced frame" if spoken else "t0", reached, stages, missing is None, missing)


def _call_breakdown(x: TurnEvidence) -> Breakdown:
    c = x.call
    assert c is not None
    if c.first_audio is None:
        return Breakdown(x.turn, "caller's end of speech", "caller's end of speech", [], False,
                         "no agent audio arrived")
    if c.has_stages and None not in (c.eos_ms, c.net_ms):
        parts = [("endpointing", c.eos_ms, "input.end_silence_ms"), ("agent", c.agent_ms, "the agent's own breakdown"),
                 ("network", c.net_ms, "the network leg (call --network)"),
                 ("residual", c.first_audio - c.eos_ms - c.agent_ms - c.net_ms, None)]  # type: ignore[operator]
    else:
        parts = [("agent_network", c.first_audio, "the agent's own breakdown")]
    if c.real_latency is not None:
        parts.append(("silence", c.real_latency - c.first_audio, "tts.voice"))
    stages = []
    at = 0.0
    for key, ms, setting in parts:
        stages.append(Stage(key, CALL_STAGE_LABELS[key], ms, at, at + ms, setting))  # type: ignore[operator]
        at += ms  # type: ignore[operator]
    complete = c.real_latency is not None
    return Breakdown(x.turn, "caller's end of speech", "first audible sample" if complete else "agent's first audio",
                     stages, complete, None if complete else "no audible agent audio heard")
