"""The oracle bound: the earliest first audio a recorded turn could have had.

The earliest possible first audio is the arrival of the token that ends an acceptable first
chunk plus the TTS's time to first audio for that chunk. Per turn there are two bounds:

- own: the first chunk the strategy really sent, with the TTS time the trace measured for it.
  Measured TTFA / own bound is what the chunker's wait for confirmation and the hand-off cost.
- best: the earliest of every acceptable first chunk, i.e. a prefix of the reply ending at a
  boundary the chunker recognizes (strong, or weak with at least `first_min_chars` characters,
  never inside an abbreviation, a number, a URL ...) or at the end of a finished reply, with
  its TTS time estimated at the turn's recorded ms per character, as `playground compare`
  estimates TTFA. A deadline cut is no boundary, so a strategy's own bound can beat it.

    bound = oracle_bound(session.trace.turn_events(1), session.preset.chunker)
    bound.own_ratio   # measured TTFA / own bound, None when the turn has no bound
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from playground.chunking.clean import clean_for_speech
from playground.chunking.compare import RecordedToken, estimated_tts_ms, first_tts, rechunk, turn_tokens
from playground.core import events as ev
from playground.core.metrics import percentile
from playground.core.presets import ChunkerConfig
from playground.core.timeline import CANCELLED, turn_timeline

# Issue 7's target: the default strategy's measured TTFA within this factor of its own bound (median).
TARGET_RATIO = 1.15
# `clause` with the smallest min_chars cuts at every boundary the chunker recognizes, so each
# of its cuts ends a candidate first chunk; which may end a first chunk is decided here.
_EVERY_BOUNDARY = ChunkerConfig(strategy="clause", min_chars=1)


@dataclass(frozen=True)
class OracleBound:
    measured_ttfa: float | None  # the turn's first audio (TTFA), when the trace has it
    own_chunk_text: str | None  # the first chunk the strategy sent to TTS
    tts_latency_ms: float | None  # its tts.send -> first tts.audio
    own_bound: float | None  # arrival of the token with its last character + tts_latency_ms
    best_chunk_text: str | None  # the acceptable first chunk with the earliest bound
    best_bound: float | None
    unknown: str | None = None  # why a bound is None

    @property
    def own_ratio(self) -> float | None:
        return ratio(self.measured_ttfa, self.own_bound)

    @property
    def best_ratio(self) -> float | None:
        return ratio(self.measured_ttfa, self.best_bound)


def ratio(measured: float | None, bound: float | None) -> float | None:
    return None if measured is None or not bound else measured / bound


def best_first_chunk(tokens: Sequence[RecordedToken], done_ms: float | None, first_min_chars: int,
                     ms_per_char: float) -> tuple[float, str] | None:
    """(bound, text) of the acceptable first chunk that could be heard first; None when the reply
    has none (no boundary before it stopped unfinished). `done_ms`: when the LLM finished, if it did."""
    best: tuple[float, str] | None = None
    prefix = ""
    for chunk in rechunk(tokens, done_ms, _EVERY_BOUNDARY).chunks:
        prefix += chunk.raw
        text = clean_for_speech(prefix)
        acceptable = (chunk.reason == "strong"
                      or (chunk.reason == "weak" and len(prefix.lstrip()) >= first_min_chars)
                      or (chunk.reason == "flush" and done_ms is not None))
        if text and acceptable:
            bound = tokens[chunk.token_end][0] + estimated_tts_ms(text, ms_per_char)
            if best is None or bound < best[0]:
                best = (bound, text)
    return best


def oracle_bound(turn_events: Sequence[ev.TraceEvent], config: ChunkerConfig) -> OracleBound:
    """The bounds of one recorded turn (its events, as `Trace.turn_events` gives them) that ran
    with chunker `config`. Bounds are None, with the reason in `unknown`, for a cancelled turn
    and for one with no chunk or no TTS audio."""
    turn = turn_timeline(turn_events)
    measured = turn.markers.get("ttfa")
    if turn.status == CANCELLED:
        why = f"turn cancelled ({turn.status_detail}): its reply is incomplete"
        return OracleBound(measured, None, None, None, None, None, why)
    chunks = {index: track.emitted for index, track in turn.chunks.items() if track.emitted is not None}
    if not chunks:
        return OracleBound(measured, None, None, None, None, None, "no chunk: the reply had no text")
    first = first_tts(turn)
    if first is None:
        sent = any(track.send_ms is not None for track in turn.chunks.values())
        why = ("no TTS audio for the first chunk sent (TTFA not measured, e.g. a REST fallback)" if sent
               else "nothing speakable was sent to TTS")
        return OracleBound(measured, None, None, None, None, None, why)
    own = chunks[first.chunk]
    own_bound = turn.token_arrivals[own.token_end] + first.latency_ms
    tokens, done_ms = turn_tokens(turn_events)
    best = best_first_chunk(tokens, done_ms, config.first_min_chars, first.ms_per_char)
    if best is None:
        return OracleBound(measured, own.text, first.latency_ms, own_bound, None, None,
                           "no acceptable first chunk: no boundary before the reply stopped unfinished")
    return OracleBound(measured, own.text, first.latency_ms, own_bound, best[1], best[0])


def median_ratios(bounds: Iterable[OracleBound]) -> tuple[float | None, float | None]:
    """Medians of measured TTFA / own bound and of measured TTFA / best bound, over the turns that have them."""
    bounds = list(bounds)
    return percentile([b.own_ratio for b in bounds], 50), percentile([b.best_ratio for b in bounds], 50)
