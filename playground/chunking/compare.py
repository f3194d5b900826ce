"""What-if chunking: a recorded token stream run through a chunker configuration.

Tokens are fed at their recorded times and deadlines fire between them exactly as they
would have live, so TTFS and the chunk sizes are what that strategy would have produced
on the same LLM behaviour.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from playground.chunking.chunker import Chunk, Chunker
from playground.core import events as ev
from playground.core.metrics import percentile
from playground.core.presets import STRATEGIES, ChunkerConfig
from playground.core.timeline import TurnTimeline, turn_timeline

RecordedToken = tuple[float, str]  # (t_ms after t0, text)


@dataclass
class Rechunked:
    strategy: str
    chunks: list[Chunk]
    llm_ttft: float | None

    @property
    def ttfs(self) -> float | None:
        return self.chunks[0].end_ms if self.chunks else None

    @property
    def chunker_wait(self) -> float | None:
        return None if self.ttfs is None or self.llm_ttft is None else self.ttfs - self.llm_ttft

    def _spoken_lengths(self) -> list[int]:
        return [len(c.text) for c in self.chunks if c.text]

    @property
    def shortest(self) -> int | None:
        return min(self._spoken_lengths(), default=None)

    @property
    def longest(self) -> int | None:
        return max(self._spoken_lengths(), default=None)


def turn_tokens(turn_events: Sequence[ev.TraceEvent]) -> tuple[list[RecordedToken], float | None]:
    """A recorded turn's tokens (t_ms, text) and when the LLM finished (llm.done), if it did."""
    tokens = [(e.t_ms, e.text) for e in turn_events if isinstance(e, ev.LlmToken) and e.text]
    done = ev.first(turn_events, ev.LlmDone)
    return tokens, done.t_ms if done else None


def rechunk(tokens: Sequence[RecordedToken], end_ms: float | None, config: ChunkerConfig) -> Rechunked:
    chunker = Chunker(config)
    chunks: list[Chunk] = []
    for t, text in tokens:
        deadline = chunker.next_deadline()
        while deadline is not None and deadline <= t:  # no token came in time: the deadline fires
            cut = chunker.poll(deadline)
            if not cut:
                break  # cannot cut yet: the next push checks the deadline again
            chunks += cut
            deadline = chunker.next_deadline()
        chunks += chunker.push(text, t)
    last = tokens[-1][0] if tokens else 0.0
    chunks += chunker.flush(end_ms if end_ms is not None else last)
    return Rechunked(config.strategy, chunks, tokens[0][0] if tokens else None)


def rechunk_all(tokens: Sequence[RecordedToken], end_ms: float | None, config: ChunkerConfig) -> list[Rechunked]:
    """Every strategy, with the other chunker parameters as given."""
    return [rechunk(tokens, end_ms, replace(config, strategy=s)) for s in STRATEGIES]


# -- whole traces: every recorded turn under several chunker configurations ---------------


@dataclass
class RecordedTurn:
    turn: int
    user_text: str
    tokens: list[RecordedToken]
    done_ms: float | None
    strategy: str | None  # the chunker it ran with ...
    chunker: dict[str, Any]  # ... and that chunker's parameters (empty when the trace has none)
    ttfs: float | None  # what it recorded
    ttfa: float | None
    # The recorded TTS's time to first audio per character of its first chunk: send -> first audio.
    tts_ms_per_char: float | None

    def chunker_config(self, base: ChunkerConfig) -> ChunkerConfig:
        """`base` with the parameters this turn ran with (fields this version does not know are left out)."""
        known = {f.name for f in fields(ChunkerConfig)}
        return replace(base, **{k: v for k, v in self.chunker.items() if k in known})


@dataclass(frozen=True)
class FirstTTS:
    """The turn's first chunk sent to TTS and how long TTS took to its first audio."""

    chunk: int  # its index
    chars: int  # characters of the text TTS got
    latency_ms: float  # tts.send -> first tts.audio of that chunk

    @property
    def ms_per_char(self) -> float:
        return self.latency_ms / self.chars


def first_tts(turn: TurnTimeline) -> FirstTTS | None:
    """None when the turn has no audio for its first chunk sent to TTS with text (no TTS, or TTFA
    was not measured, e.g. a REST fallback)."""
    sent = [track for track in turn.chunks.values() if track.send_ms is not None and track.sent_chars]
    if not sent:
        return None
    track = min(sent, key=lambda t: t.send_ms or 0.0)
    if track.first_audio_ms is None or track.send_ms is None:
        return None
    return FirstTTS(track.index, track.sent_chars, track.first_audio_ms - track.send_ms)


def tts_ms_per_char(turn: TurnTimeline) -> float | None:
    """ms from sending the turn's first chunk to TTS to its first audio, per character (None: see `first_tts`)."""
    first = first_tts(turn)
    return None if first is None else first.ms_per_char


def estimated_tts_ms(text: str, ms_per_char: float) -> float:
    """Send -> first audio for `text` at a recorded TTS speed: how `compare` and the oracle bound estimate TTFA."""
    return len(text) * ms_per_char


def recorded_turns(events: Sequence[ev.TraceEvent]) -> list[RecordedTurn]:
    """The turns of a trace that have LLM tokens, in order."""
    turns = []
    for n, turn_events in sorted(ev.events_by_turn(events).items()):
        if n == ev.SESSION_TURN:
            continue
        tokens, done = turn_tokens(turn_events)
        if not tokens:
            continue
        start = ev.first(turn_events, ev.TurnStart)
        timeline = turn_timeline(turn_events)
        turns.append(RecordedTurn(
            turn=n, user_text=start.text if start else "", tokens=tokens, done_ms=done,
            strategy=start.strategy if start else None, chunker=(start.chunker or {}) if start else {},
            ttfs=timeline.markers.get("ttfs"), ttfa=timeline.markers.get("ttfa"),
            tts_ms_per_char=tts_ms_per_char(timeline)))
    return turns


@dataclass
class Variant:
    """Chunker settings to compare (applied over each turn's recorded parameters), and their label."""

    label: str
    settings: dict[str, Any]


@dataclass
class Outcome:
    """One recorded turn under one variant."""

    variant: Variant
    result: Rechunked
    # TTFS + the first spoken chunk's characters x the recorded ms per character; None for
    # passthrough, whose first audio depends on how the TTS server buffers the fragments
    ttfa_estimate: float | None

    @property
    def first_text(self) -> str:
        return next((c.text for c in self.result.chunks if c.text), "")


@dataclass
class TurnComparison:
    turn: RecordedTurn
    outcomes: list[Outcome]
    ms_per_char: float | None  # what the TTFA estimate used (this turn's, else the trace's median)

    def score(self, outcome: Outcome) -> float | None:
        """What the winner is chosen by: the estimated TTFA, or TTFS when TTFA cannot be estimated."""
        return outcome.ttfa_estimate if self.ms_per_char is not None else outcome.result.ttfs

    @property
    def winners(self) -> list[Outcome]:
        """The outcomes with the best score (several on a tie); passthrough leaves chunking to the
        TTS server, so its TTFS says nothing about first audio and it never wins."""
        scored = [(score, o) for o in self.outcomes
                  if o.result.strategy != "passthrough" and (score := self.score(o)) is not None]
        if not scored:
            return []
        best = min(score for score, _ in scored)
        return [o for score, o in scored if score - best < 0.5]


def compare_turns(turns: Sequence[RecordedTurn], variants: Sequence[Variant],
                  base: ChunkerConfig | None = None) -> list[TurnComparison]:
    """Every turn through every variant, each over the parameters the turn was recorded with
    (on top of `base`). TTFA is estimated from the turn's own recorded TTS speed, or the
    median over the trace's turns when the turn has none."""
    base = base or ChunkerConfig()
    trace_rate = percentile([t.tts_ms_per_char for t in turns if t.tts_ms_per_char is not None], 50)
    comparisons = []
    for turn in turns:
        rate = turn.tts_ms_per_char if turn.tts_ms_per_char is not None else trace_rate
        recorded = turn.chunker_config(base)
        outcomes = []
        for variant in variants:
            result = rechunk(turn.tokens, turn.done_ms, replace(recorded, **variant.settings))
            first = next((c for c in result.chunks if c.text), None)
            unknown = rate is None or first is None or result.strategy == "passthrough"
            estimate = None if unknown else first.end_ms + estimated_tts_ms(first.text, rate)
            outcomes.append(Outcome(variant, result, estimate))
        comparisons.append(TurnComparison(turn, outcomes, rate))
    return comparisons
