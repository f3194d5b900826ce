"""The rules: a turn's evidence and breakdown in, its findings out.

Each finding has a severity, the numbers it rests on (with the events they come from), its
cause, the setting that owns it and a what-if. A what-if is computed, never guessed: by the
chunking tools on the turn's recorded tokens (`compare`, the oracle bound, a re-chunk), or
measured on the session itself (its median of the same stage on the turns that did not have
the problem), or arithmetic on a recorded setting (the VAD waits exactly `end_silence_ms`).
When nothing in the trace can compute it, the what-if says so and claims no saving.

Thresholds are here, with why; a rule that compares with "the session's median" needs
MIN_TURNS_FOR_MEDIAN turns that measured the number, or it stays quiet.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields, replace
from statistics import median
from typing import Any

from playground.chunking.compare import (
    RecordedTurn,
    TurnComparison,
    Variant,
    compare_turns,
    recorded_turns,
    rechunk,
)
from playground.chunking.oracle import oracle_bound
from playground.core.metrics import METRIC_LABELS, budget_misses
from playground.core.presets import STRATEGIES, ChunkerConfig
from playground.diagnosis.breakdown import Breakdown, chunker_setting
from playground.diagnosis.evidence import FRAME_MS, SessionFacts, TurnEvidence

CRITICAL, WARNING, INFO = "CRITICAL", "WARNING", "INFO"
SEVERITIES = (CRITICAL, WARNING, INFO)  # worst first

MIN_TURNS_FOR_MEDIAN = 3  # fewer turns than this have no "usual" to compare with
SLOW_FACTOR = 2.0  # slower than its session median by this factor ...
SLOW_MARGIN_MS = 200.0  # ... and by this much at least: a 40 ms stage doubling to 80 is no news
BURST_GAP_MS = 150.0  # a pause in the token stream at least this long ...
BURST_GAP_FACTOR = 4.0  # ... and this many times the turn's usual token interval ...
BURST_WINDOW_MS = 5.0  # ... then tokens arriving this close together ...
BURST_MIN_TOKENS = 3  # ... at least this many: they were held back and sent at once
FIRST_SENTENCE_SHARE = 0.7  # the seed's "first sentence at 74-97% of LLM_TOTAL"
FIRST_SENTENCE_MIN_TOTAL_MS = 1000.0  # a short reply's share says nothing
CACHE_HIT_SHARE = 0.5  # prompt tokens the provider had cached, at least this share: a cache hit
GAPS_MIN_MS = 40.0  # playback gaps, in all, at least this long (a stutter one hears)
STOP_BUDGET_MS = 250.0  # a cut reply should stop within this (barge-in, Esc)
SPEECH_STAGE_SHARE = 0.3  # endpointing or STT at least this share of USER_LATENCY
SHORTER_END_SILENCE_MS = 300.0  # the end_silence_ms the what-if tries (when the preset's is longer)
LEADING_SILENCE_MS = 300.0  # silence at the start of the first audio at least this long
NETWORK_SHARE = 0.4  # a phone turn's network leg at least this share of FIRST_AUDIO


@dataclass(frozen=True)
class Fact:
    """One number of the evidence and where it comes from."""

    label: str
    value: str
    source: str

    def to_json(self) -> dict[str, str]:
        return {"label": self.label, "value": self.value, "source": self.source}


@dataclass(frozen=True)
class WhatIf:
    text: str
    saving_ms: float | None  # what the change would save on this turn (None: not computable)
    basis: str  # how it was computed

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text, "saving_ms": _round(self.saving_ms), "basis": self.basis}


@dataclass(frozen=True)
class Finding:
    code: str
    severity: str
    turn: int
    title: str
    label: str  # a few characters for the waterfall band
    facts: list[Fact]
    cause: str
    setting: str | None
    what_if: WhatIf

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "severity": self.severity, "turn": self.turn, "title": self.title,
                "label": self.label, "facts": [f.to_json() for f in self.facts], "cause": self.cause,
                "setting": self.setting, "what_if": self.what_if.to_json()}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} ms"


def pct(part: float, whole: float) -> str:
    return f"{100.0 * part / whole:.0f}%" if whole else "-"


def _median(values: Iterable[float | None], minimum: int) -> float | None:
    data = [v for v in values if v is not None]
    return median(data) if data and len(data) >= minimum else None


def tts_first_audio(x: TurnEvidence) -> float | None:
    """TTFA - TTFT_TTS: the TTS's own time to its first audio."""
    m = x.metrics
    return None if m.ttfa is None or m.ttft_tts is None else m.ttfa - m.ttft_tts


@dataclass
class SessionContext:
    """What the rules compare a turn with: the session's settings and its usual numbers."""

    facts: SessionFacts
    base_chunker: ChunkerConfig
    turns: list[TurnEvidence] = field(default_factory=list)
    trace_ms_per_char: float | None = None  # the trace's median TTS speed, for compare's TTFA estimate

    def median(self, value: Callable[[TurnEvidence], float | None],
               where: Callable[[TurnEvidence], bool] = lambda x: True, exclude: int | None = None,
               minimum: int = MIN_TURNS_FOR_MEDIAN) -> float | None:
        """The median of `value` over the session's turns (but `exclude`) that measured it and match
        `where`; None with fewer than `minimum` (to say a turn is slow, MIN_TURNS_FOR_MEDIAN; as the
        reference of a what-if, one turn that did not have the problem is a measurement)."""
        return _median((value(x) for x in self.turns if x.turn != exclude and where(x)), minimum)

    def persistent_tts_median(self, provider: str | None) -> float | None:
        """The TTS's own first-audio time on the turns that reached it over the persistent session."""
        return self.median(tts_first_audio, lambda x: x.metrics.tts_path == "persistent" and x.tts_provider == provider,
                           minimum=1)


Rule = Callable[[TurnEvidence, Breakdown, SessionContext], Iterable[Finding]]


# -- TTS not reached over the persistent session ------------------------------------------------


def rule_tts_path(x: TurnEvidence, b: Breakdown, ctx: SessionContext) -> Iterable[Finding]:
    m = x.metrics
    path_events = [s for s in x.tts_sessions if s.path == m.tts_path and s.action in ("fallback", "reconnect", "reuse")]
    event = next((s for s in reversed(path_events) if s.reason), path_events[-1] if path_events else None)
    source = str(event.source) if event else "turn.summary"
    provider = x.tts_provider or "TTS"
    if m.tts_path == "fallback_rest" and not m.tts_path_fault:
        yield Finding("tts_rest_chosen", INFO, x.turn, f"{provider} over REST, by the preset's choice", "REST",
                      [Fact("path", "fallback_rest", source), Fact("reason", m.tts_path_reason or "-", source)],
                      "the preset sets tts.persistent = false: every chunk is a new HTTP request", "tts.persistent",
                      _persistent_what_if(x, ctx))
        return
    if m.tts_path not in ("fallback_rest", "reconnected"):
        return
    facts = [Fact("path", m.tts_path, source), Fact("reason", m.tts_path_reason or "not recorded", source)]
    never_opened = ctx.facts.kind == "session" and not ctx.facts.tts_opened
    if m.tts_path == "fallback_rest":
        measured = m.ttfa is not None
        facts.append(Fact("TTFA", ms(m.ttfa) if measured else "not measured (no audio reported over REST)",
                          str(x.first_audio) if measured else "no tts.audio"))
        cause = "TTS was reached over REST, not the persistent session"
        if never_opened:
            cause += ": the trace has no `tts.session open`, so the persistent session was never opened"
        elif m.tts_path_reason:
            cause += f": {m.tts_path_reason}"
        yield Finding("tts_rest", CRITICAL, x.turn, f"{provider}: persistent TTS not used (REST fallback)", "REST",
                      facts, cause, "tts.persistent", _persistent_what_if(x, ctx))
        return
    downtime = sum(s.downtime_ms or 0.0 for s in x.tts_sessions if s.action == "reconnect")
    if downtime:
        facts.append(Fact("without a connection", ms(downtime), "tts.session reconnect downtime_ms"))
    what_if = _persistent_what_if(x, ctx)
    if what_if.saving_ms is None and downtime:
        what_if = WhatIf(f"an undisturbed session would not have waited {ms(downtime)} for the reconnect", downtime,
                         "measured (reconnect downtime)")
    yield Finding("tts_reconnected", WARNING, x.turn, f"{provider}: the persistent session had to reconnect",
                  "RECONNECT", facts, f"the connection was lost or missing: {m.tts_path_reason or 'no reason recorded'}",
                  "tts.keepalive_ms", what_if)


def _persistent_what_if(x: TurnEvidence, ctx: SessionContext) -> WhatIf:
    own = tts_first_audio(x)
    usual = ctx.persistent_tts_median(x.tts_provider)
    if own is not None and usual is not None:
        saving = max(own - usual, 0.0)
        return WhatIf(f"over the persistent session TTS took {ms(usual)} to first audio (session median), "
                      f"this turn {ms(own)}: {ms(saving)} sooner", saving, "measured (session median, persistent turns)")
    return WhatIf("not computable from this trace: no turn both measured TTFA and reached TTS over the persistent "
                  "session (`playground replay TRACE --tts preset` measures it)", None, "-")


# -- the chunker: a run-on first chunk ---------------------------------------------------------------


def chunker_wait_budget(budgets: dict[str, float]) -> float:
    """The chunker's own budget when the preset sets one (chunker_wait), else the TTFS budget: a
    wait that alone spends what the first sentence may take."""
    return budgets.get("chunker_wait", budgets.get("ttfs", 500.0))


def _recorded_turn(x: TurnEvidence, ctx: SessionContext) -> RecordedTurn | None:
    turns = recorded_turns(x.events)
    if not turns:
        return None
    turn = turns[0]
    if turn.tts_ms_per_char is None:
        turn = replace(turn, tts_ms_per_char=ctx.trace_ms_per_char)
    return turn


def _variants(x: TurnEvidence, config: ChunkerConfig) -> list[Variant]:
    found = [Variant(s, {"strategy": s}) for s in STRATEGIES if s != "passthrough"]
    if config.strategy == "adaptive":
        shorter = config.deadline_ms / 2
        found.append(Variant(f"adaptive deadline_ms={shorter:g}", {"strategy": "adaptive", "deadline_ms": shorter}))
    return found


def rule_run_on(x: TurnEvidence, b: Breakdown, ctx: SessionContext) -> Iterable[Finding]:
    m = x.metrics
    budget = chunker_wait_budget(ctx.facts.budgets)
    # A first chunk cut by the deadline is the chunker doing its job: its wait is the deadline's.
    if (m.chunker_wait is None or m.chunker_wait <= budget or x.first_chunk is None
            or x.first_chunk.reason in ("deadline", "underrun")):
        return
    turn = _recorded_turn(x, ctx)
    if turn is None:
        return
    config = turn.chunker_config(ctx.base_chunker)
    first = x.first_chunk
    every = rechunk(turn.tokens, turn.done_ms, ChunkerConfig(strategy="clause", min_chars=1)).chunks
    facts = [Fact("chunker wait (TTFS - LLM_TTFT)", f"{ms(m.chunker_wait)} (budget {ms(budget)})",
                  f"{first.source} - first llm.token"),
             Fact("first chunk", f"{len(first.raw)} characters, cut by `{first.reason}` under `{config.strategy}`",
                  str(first.source))]
    if every and every[0].reason in ("strong", "weak"):
        facts.append(Fact("first boundary of any kind", f"after {len(every[0].raw)} characters ({every[0].reason}), "
                          f"at {ms(every[0].end_ms)}", "re-chunk at every boundary"))
    else:
        facts.append(Fact("first boundary of any kind", "none before the reply ended", "re-chunk at every boundary"))
    comparison = compare_turns([turn], _variants(x, config), ctx.base_chunker)[0]
    facts.append(Fact("compare: TTFS per strategy", ", ".join(
        f"{o.variant.label} {ms(o.result.ttfs)}" for o in comparison.outcomes), "playground compare"))
    bound = oracle_bound(x.events, config)
    if bound.best_bound is not None:
        facts.append(Fact("oracle bound", f"first audio possible at {ms(bound.best_bound)}", "playground compare (oracle)"))
    what_if = _compare_what_if(comparison, config, m.ttfs)
    setting = chunker_setting(config.strategy)
    cause = (f"the first {len(first.raw)} characters had no boundary `{config.strategy}` cuts at, so the chunker held "
             f"them for {ms(m.chunker_wait)} after the first token")
    yield Finding("run_on", CRITICAL if m.chunker_wait > 4 * budget else WARNING, x.turn,
                  f"run-on first chunk: {ms(m.chunker_wait)} of chunker wait", f"RUN-ON +{m.chunker_wait / 1000:.1f}s",
                  facts, cause, setting, what_if)


def _compare_what_if(c: TurnComparison, config: ChunkerConfig, recorded_ttfs: float | None) -> WhatIf:
    """The best variant by compare's own rule (estimated TTFA, else TTFS), against the recorded chunker."""
    winners = c.winners
    if not winners:
        return WhatIf("compare found no variant with a first chunk", None, "playground compare")
    best = winners[0]
    by_ttfa = c.ms_per_char is not None
    recorded = next((o for o in c.outcomes if o.variant.settings == {"strategy": config.strategy}), None)
    if any(o is recorded for o in winners):
        return WhatIf(f"no other strategy would have been earlier on these tokens: `{config.strategy}` is "
                      f"compare's winner (a faster LLM or a shorter reply would be)", None, "playground compare")
    before = c.score(recorded) if recorded is not None and by_ttfa else recorded_ttfs
    after = c.score(best)
    saving = None if before is None or after is None else max(before - after, 0.0)
    what = "estimated TTFA" if by_ttfa else "TTFS"
    adaptive = next((o for o in c.outcomes if o.variant.label == "adaptive"), None)
    text = (f"{best.variant.label}: {what} {ms(after)} instead of {ms(before)} (-{ms(saving)}), first chunk "
            f"\"{best.first_text[:48]}\"")
    if adaptive is not None and adaptive is not best:
        text += f"; adaptive: {what} {ms(c.score(adaptive))}"
    return WhatIf(text, saving, f"playground compare (same tokens, same times; {what})")


# -- the LLM ---------------------------------------------------------------------------------------


def _token_bursts(tokens: Sequence[tuple[float, str]]) -> list[tuple[int, float, int]]:
    """(index of the first token after the pause, the pause, tokens that then arrived at once)."""
    times = [t for t, _ in tokens]
    intervals = [b - a for a, b in zip(times, times[1:])]
    if len(intervals) < 2:
        return []
    usual = median(intervals)
    bursts = []
    for i, gap in enumerate(intervals):
        if gap < max(BURST_GAP_MS, BURST_GAP_FACTOR * usual):
            continue
        start = i + 1
        together = 1
        while start + together < len(times) and times[start + together] - times[start] <= BURST_WINDOW_MS:
            together += 1
        if together >= BURST_MIN_TOKENS:
            bursts.append((start, gap, together))
    return bursts


def rule_batched_stream(x: TurnEvidence, b: Breakdown, ctx: SessionContext) -> Iterable[Finding]:
    bursts = _token_bursts(x.tokens)
    if not bursts:
        return
    start, gap, together = max(bursts, key=lambda burst: burst[1])
    held = sum(g for _, g, _ in bursts)
    facts = [Fact("bursts", f"{len(bursts)}: {together} tokens at once after a {ms(gap)} pause (token {start})",
                  f"llm.token @{x.tokens[start][0]:,.1f} ms"),
             Fact("token pauses before bursts", ms(held), "llm.token arrival times")]
    what_if = WhatIf("not computable: the turn has no first chunk", None, "-")
    turn = _recorded_turn(x, ctx)
    if turn is not None and x.metrics.ttfs is not None and len(turn.tokens) > 1:
        first, last = turn.tokens[0][0], turn.tokens[-1][0]
        step = (last - first) / (len(turn.tokens) - 1)
        even = [(first + i * step, text) for i, (_, text) in enumerate(turn.tokens)]
        ttfs = rechunk(even, turn.done_ms, turn.chunker_config(ctx.base_chunker)).ttfs
        if ttfs is not None:
            saving = max(x.metrics.ttfs - ttfs, 0.0)
            what_if = WhatIf(f"streamed evenly over the same LLM_TOTAL, TTFS {ms(ttfs)} instead of "
                             f"{ms(x.metrics.ttfs)} (-{ms(saving)})", saving,
                             "re-chunk (the recorded tokens spread evenly from the first to the last)")
    yield Finding("batched_stream", WARNING, x.turn, f"LLM tokens arrive in bursts after pauses (up to {ms(gap)})",
                  "BURSTS", facts, "the provider (or a proxy) holds tokens back and sends them together: "
                  "the chunker sees text late", "llm.base_url", what_if)


def rule_first_sentence_share(x: TurnEvidence, b: Breakdown, ctx: SessionContext) -> Iterable[Finding]:
    m = x.metrics
    if (m.ttfs is None or m.llm_total is None or m.llm_ttft is None or m.chunks < 2
            or m.llm_total < FIRST_SENTENCE_MIN_TOTAL_MS or m.ttfs < FIRST_SENTENCE_SHARE * m.llm_total):
        return
    wait = m.ttfs - m.llm_ttft
    share = pct(m.ttfs, m.llm_total)
    facts = [Fact("TTFS / LLM_TOTAL", f"{ms(m.ttfs)} / {ms(m.llm_total)} = {share}", "chunk #0, last llm.token"),
             Fact("LLM_TTFT / chunker wait", f"{ms(m.llm_ttft)} / {ms(wait)}", "first llm.token, chunk #0")]
    if wait >= m.llm_ttft:
        yield Finding("first_sentence_late", INFO, x.turn, f"first chunk at {share} of the LLM's time", "",
                      facts, "the tokens streamed early; the chunker waited for a boundary (see the run-on finding)",
                      chunker_setting(x.strategy), WhatIf("see the run-on finding's compare", None, "-"))
        return
    usual = ctx.median(lambda t: t.metrics.llm_ttft, exclude=x.turn, minimum=1)
    saving = None if usual is None else max(m.llm_ttft - usual, 0.0)
    text = (f"with the session's median LLM_TTFT ({ms(usual)}) TTFS would be {ms(m.ttfs - saving)}" if saving is not None
            else "not computable: too few turns for a session median of LLM_TTFT")
    yield Finding("first_sentence_late", WARNING, x.turn, f"first chunk at {share} of the LLM's time: a late first token",
                  "LATE START", facts, f"the first token came at {ms(m.llm_ttft)}: the LLM started streaming late",
                  "llm.model", WhatIf(text, saving, "measured (session median)" if saving is not None else "-"))


def rule_slow_first_token(x: TurnEvidence, b: Breakdown, ctx: SessionContext) -> Iterable[Finding]:
    m = x.metrics
    llm = x.llm
    if m.llm_ttft is None:
        return
    usual = ctx.median(lambda t: t.metrics.llm_ttft, exclude=x.turn)
    slow = usual is not None and m.llm_ttft > max(SLOW_FACTOR * usual, usual + SLOW_MARGIN_MS)
    facts = [Fact("LLM_TTFT", f"{ms(m.llm_ttft)} (session median {ms(usual)})", "first llm.token")]
    if llm.prompt_chars is not None:
        facts.append(Fact("prompt", f"{llm.prompt_chars:,} characters, {llm.messages} messages", str(llm.request)))
    cached_share = None
    if llm.prompt_tokens and llm.cached_tokens is not None:
        cached_share = llm.cached_tokens / llm.prompt_tokens
        facts.append(Fact("cached prompt tokens", f"{llm.cached_tokens:,} of {llm.prompt_tokens:,}",
                          f"{llm.done} usage.prompt_tokens_details"))
    if llm.reasoning_chars:
        facts.append(Fact("reasoning before content", f"{llm.reasoning_chars:,} characters", f"{llm.done} reasoning_chars"))
    block = llm.context_how == "block" and bool(llm.context_trimmed)
    if block:
        facts.append(Fact("context window", f"moved by block: {llm.context_trimmed} messages dropped",
                          f"{llm.done} context"))
    if not slow:
        if llm.reasoning_chars:
            yield Finding("reasoning", INFO, x.turn, "the model reasons before it answers", "", facts,
                          f"{llm.reasoning_chars:,} reasoning characters streamed before the first content token",
                          "llm.model", WhatIf("not computable: no turn of this session answered without reasoning",
                                              None, "-"))
        return
    hits = ctx.median(lambda t: t.metrics.llm_ttft, lambda t: _cache_hit(t) is True, exclude=x.turn, minimum=1)
    plain = ctx.median(lambda t: t.metrics.llm_ttft, lambda t: not t.llm.reasoning_chars, exclude=x.turn, minimum=1)
    if block:
        code, cause, setting, reference, basis = (
            "context_block", "the context window moved by block: the prompt changed at its start, so the whole "
            "prompt was evaluated again", "llm.context_trim", hits, "session median, turns with a cache hit")
    elif cached_share is not None and cached_share < CACHE_HIT_SHARE and x.turn != ctx.turns[0].turn:
        code, cause, setting, reference, basis = (
            "prefix_cache_miss", f"prefix cache miss: only {cached_share:.0%} of the prompt was cached, the provider "
            "evaluated the rest before the first token", "agent.system_prompt", hits, "session median, turns with a cache hit")
    elif llm.reasoning_chars:
        code, cause, setting, reference, basis = (
            "reasoning", f"{llm.reasoning_chars:,} reasoning characters came before the first content token",
            "llm.model", plain, "session median, turns without reasoning")
    else:
        code, cause, setting, reference, basis = (
            "slow_first_token", "the provider took longer than usual to start: its load or the prompt's size",
            "llm.model", usual, "session median")
    if reference is None:
        what_if = WhatIf(f"not computable: too few turns for a median ({basis})", None, "-")
    else:
        saving = max(m.llm_ttft - reference, 0.0)
        what_if = WhatIf(f"LLM_TTFT {ms(reference)} as on the session's other turns: -{ms(saving)}", saving,
                         f"measured ({basis})")
    yield Finding(code, WARNING, x.turn, f"slow first token: {ms(m.llm_ttft)}", "SLOW LLM", facts, cause, setting, what_if)


def _cache_hit(x: TurnEvidence) -> bool | None:
    if not x.llm.prompt_tokens or x.llm.cached_tokens is None:
        return None
    return x.llm.cached_tokens / x.llm.prompt_tokens >= CACHE_HIT_SHARE


# -- TTS -------------------------------------------------------------------------------------------


def rule_slow_tts(x: TurnEvidence, b: Breakdown, ctx: SessionContext) -> Iterable[Finding]:
    own = tts_first_audio(x)
    if own is None:
        return
    usual = ctx.median(tts_first_audio, lambda t: t.tts_provider == x.tts_provider, exclude=x.turn)
    if usual is None or own <= max(SLOW_FACTOR * usual, usual + SLOW_MARGIN_MS):
        return
    facts = [Fact("TTS first audio (TTFA - TTFT_TTS)", f"{ms(own)} ({x.tts_provider or '?'}, session median {ms(usual)})",
                  f"{x.first_audio} - {x.first_send}")]
    chars = _first_sent_chars(x)
    usual_chars = ctx.median(_first_sent_chars, lambda t: t.tts_provider == x.tts_provider, exclude=x.turn)
    if chars and usual_chars:
        facts.append(Fact("first chunk sent", f"{chars:.0f} characters (session median {usual_chars:.0f})",
                          str(x.first_send)))
    if chars and usual_chars and own / chars <= SLOW_FACTOR * usual / usual_chars:
        # The TTS ran at its usual speed per character: the first chunk was long.
        turn = _recorded_turn(x, ctx)
        if turn is not None:
            config = turn.chunker_config(ctx.base_chunker)
            comparison = compare_turns([turn], _variants(x, config), ctx.base_chunker)[0]
            yield Finding("slow_tts", WARNING, x.turn, f"slow TTS first audio: {ms(own)} for a long first chunk",
                          "LONG CHUNK", facts, f"{x.tts_provider or 'the TTS'} ran at its usual speed per character: "
                          f"the first chunk had {chars:.0f} characters, its time to first audio grows with them",
                          "chunker.strategy", _compare_what_if(comparison, config, x.metrics.ttfs))
            return
    saving = own - usual
    yield Finding("slow_tts", WARNING, x.turn, f"slow TTS first audio: {ms(own)} ({x.tts_provider or 'TTS'})",
                  "SLOW TTS", facts, f"{x.tts_provider or 'the TTS'} took {own / usual:.1f}x its usual time to the "
                  "first audio (its queue, its load, or the connection)", "tts.model",
                  WhatIf(f"at the session's median TTS first audio, TTFA {ms(x.metrics.ttfa - saving)}: -{ms(saving)}",  # type: ignore[operator]
                         saving, "measured (session median, same provider)"))


def _first_sent_chars(x: TurnEvidence) -> float | None:
    """Characters of the first chunk sent to TTS (the one TTFA - TTFT_TTS measures)."""
    return float(x.first_sent_chars) if x.first_sent_chars else None


def rule_leading_silence(x: TurnEvidence, b: Breakdown, ctx: SessionContext) -> Iterable[Finding]:
    silence = b.ms("silence")
    if silence is None or silence < LEADING_SILENCE_MS:
        return
    source = str(x.sound.source) if x.sound is not None else (str(x.call.sources.get("real_latency")) if x.call else "-")
    yield Finding("leading_silence", WARNING, x.turn, f"{ms(silence)} of silence before the first audible sample",
                  "SILENCE", [Fact("leading silence", ms(silence), source)],
                  "the first audio starts with silence: FIRST_PLAY overstates how soon the reply was heard", "tts.voice",
                  WhatIf(f"audio trimmed of its leading silence would be heard {ms(silence)} sooner", silence,
                         "measured (play.sound silence)"))


# -- playback --------------------------------------------------------------------------------------


def rule_playback_gaps(x: TurnEvidence, b: Breakdown, ctx: SessionContext) -> Iterable[Finding]:
    m = x.metrics
    if not m.gaps or (m.gaps_ms or 0.0) < GAPS_MIN_MS:
        return
    worst = max(x.gaps, key=lambda g: g.ms)
    sent = x.sends.get(worst.chunk)
    facts = [Fact("gaps after the first sample", f"{m.gaps}, {ms(m.gaps_ms)} in all", "play.gap"),
             Fact("longest", f"{ms(worst.ms)} before chunk #{worst.chunk}", str(worst.source))]
    if sent is not None and sent >= worst.from_ms:
        facts.append(Fact(f"chunk #{worst.chunk} sent to TTS", f"at {ms(sent)}, after playback ran dry at {ms(worst.from_ms)}",
                          f"tts.send #{worst.chunk}"))
        cause, setting = "the next chunk's text reached TTS only after the audio before it had played out", \
            "chunker.underrun_lead_ms"
    else:
        cause, setting = "TTS made the next chunk's audio slower than the one before it played", "tts.model"
    yield Finding("playback_gaps", WARNING, x.turn, f"playback ran dry {m.gaps}x ({ms(m.gaps_ms)})", "GAPS", facts,
                  cause, setting, WhatIf(f"audio ready in time would remove {ms(m.gaps_ms)} of stutter", m.gaps_ms,
                                         "measured (play.gap)"))


def rule_cut(x: TurnEvidence, b: Breakdown, ctx: SessionContext) -> Iterable[Finding]:
    cancel = x.cancel
    if cancel is None:
        return
    facts = [Fact("reason", cancel.reason, str(cancel.source)),
             Fact("stop time", ms(cancel.stop_ms), f"{cancel.source} stop_ms")]
    if cancel.played_ms is not None:
        facts.append(Fact("heard before the cut", ms(cancel.played_ms), f"{cancel.source} played"))
    if x.cut:
        facts.append(Fact("audio cut", f"chunk(s) {', '.join(f'#{c}' for c in x.cut)}", "play.end cut"))
    slow = cancel.stop_ms is not None and cancel.stop_ms > STOP_BUDGET_MS
    saving = cancel.stop_ms - STOP_BUDGET_MS if slow else None  # type: ignore[operator]
    yield Finding("cut", WARNING if slow else INFO, x.turn,
                  f"reply cut ({cancel.reason}); stopped in {ms(cancel.stop_ms)}", "CUT" if slow else "", facts,
                  "the user spoke over the reply or stopped it" + (f"; stopping took longer than {ms(STOP_BUDGET_MS)}"
                                                                    if slow else ""), None,
                  WhatIf(f"a stop within {ms(STOP_BUDGET_MS)} would be {ms(saving)} sooner" if slow else
                         "nothing to save: it stopped in time", saving, "measured (turn.cancelled stop_ms)"))


# -- spoken turns ----------------------------------------------------------------------------------


def rule_speech(x: TurnEvidence, b: Breakdown, ctx: SessionContext) -> Iterable[Finding]:
    m = x.metrics
    if x.speech_end is None or not m.user_latency:
        return
    latency = m.user_latency
    end_silence = x.speech_end.end_silence_ms or ctx.facts.end_silence_ms
    if m.vad_end is not None:
        large = m.vad_end >= SPEECH_STAGE_SHARE * latency
        facts = [Fact("endpointing (VAD_END)", f"{ms(m.vad_end)} = {pct(m.vad_end, latency)} of USER_LATENCY {ms(latency)}",
                      f"{x.speech_end.source} last_voiced_ms")]
        if end_silence is not None:
            facts.append(Fact("input.end_silence_ms", ms(end_silence), str(x.speech_end.source)))
        if end_silence is not None and end_silence > SHORTER_END_SILENCE_MS:
            saving = end_silence - SHORTER_END_SILENCE_MS
            what_if = WhatIf(f"input.end_silence_ms = {SHORTER_END_SILENCE_MS:.0f}: the end of speech detected "
                             f"{ms(saving)} sooner, USER_LATENCY {ms(latency - saving)} (pauses longer than "
                             f"{SHORTER_END_SILENCE_MS:.0f} ms inside a sentence would then end the turn)", saving,
                             "the VAD waits exactly input.end_silence_ms after the last voiced frame")
        else:
            what_if = WhatIf("input.end_silence_ms is short already: the rest is the VAD's frame lag", None, "-")
        yield Finding("endpointing", WARNING if large else INFO, x.turn,
                      f"endpointing is {pct(m.vad_end, latency)} of the wait", "ENDPOINT" if large else "", facts, "the turn ends only after input.end_silence_ms of silence", "input.end_silence_ms", what_if)
    if m.stt is not None and m.stt >= SPEECH_STAGE_SHARE * latency:
        facts = [Fact("STT", f"{ms(m.stt)} = {pct(m.stt, latency)} of USER_LATENCY {ms(latency)}", str(x.stt_final))]
        if x.stt_audio_ms:
            facts.append(Fact("speech transcribed", f"{ms(x.stt_audio_ms)} (real-time factor {m.stt / x.stt_audio_ms:.2f})",
                              f"{x.stt_final} audio_ms"))
        yield Finding("slow_stt", WARNING, x.turn, f"STT is {pct(m.stt, latency)} of the wait", "STT", facts,
                      "the final transcript is made after the end of speech, from all of it", "input.stt_model",
                      WhatIf("not computable from this trace: it has one STT model", None, "-"))


# -- budgets ---------------------------------------------------------------------------------------


def rule_budgets(x: TurnEvidence, b: Breakdown, ctx: SessionContext) -> Iterable[Finding]:
    for key, (value, limit) in budget_misses(x.metrics, ctx.facts.budgets).items():
        stages = b.explaining(key)
        if not stages:
            continue
        largest = b.largest(stages)
        assert largest is not None
        parts = " + ".join(f"{s.label} {ms(s.ms)}" for s in stages)
        label = METRIC_LABELS.get(key, key)
        yield Finding(f"budget_{key}", WARNING, x.turn, f"{label} {ms(value)} over its {ms(limit)} budget",
                      "", [Fact(label, f"{ms(value)} = {parts}", "the breakdown")],
                      f"{largest.label} is {pct(largest.ms, value)} of it ({ms(largest.ms)})", largest.setting,
                      WhatIf("see the finding on the stage", None, "-"))


# -- phone calls (the caller's side) -------------------------------------------------------------


def rule_call(x: TurnEvidence, b: Breakdown, ctx: SessionContext) -> Iterable[Finding]:
    c = x.call
    if c is None:
        return
    for kind, message, count in c.errors:
        yield Finding(f"call_{kind}", CRITICAL, x.turn, f"call: {kind}" + (f" (x{count})" if count > 1 else ""),
                      kind.upper(), [Fact(kind, message, "call.error")], message, None,
                      WhatIf("nothing to compute: the call broke", None, "-"))
    if c.first_audio is not None:
        usual = ctx.median(lambda t: t.call.first_audio if t.call else None, exclude=x.turn)
        if usual is not None and c.first_audio > max(SLOW_FACTOR * usual, usual + SLOW_MARGIN_MS):
            largest = b.largest([s for s in b.stages if s.key != "silence"])
            facts = [Fact("FIRST_AUDIO", f"{ms(c.first_audio)} (session median {ms(usual)})", str(c.sources["first_audio"]))]
            facts += [Fact(s.label, ms(s.ms), str(c.sources.get("stages", "call.agent_audio"))) for s in b.stages]
            saving = c.first_audio - usual
            yield Finding("slow_agent", WARNING, x.turn, f"the agent's first audio came late: {ms(c.first_audio)}",
                          "SLOW AGENT", facts, f"{largest.label if largest else 'the agent'} took the most",
                          largest.setting if largest else None,
                          WhatIf(f"at the session's median FIRST_AUDIO: -{ms(saving)}", saving, "measured (session median)"))
        network = b.ms("network")
        if network is not None and c.first_audio and network >= NETWORK_SHARE * c.first_audio:
            yield Finding("network_leg", INFO, x.turn, f"the network leg is {pct(network, c.first_audio)} of FIRST_AUDIO",
                          "", [Fact("network leg", ms(network), str(c.sources.get("stages")))],
                          "the caller's audio and the agent's reply spend this on the network", "the network leg (call --network)",
                          WhatIf("not computable from one network profile", None, "-"))
    if c.underruns:
        stutter = c.underruns * FRAME_MS
        yield Finding("call_underruns", WARNING, x.turn, f"the reply stuttered: {c.underruns} frames without audio",
                      "GAPS", [Fact("underruns", f"{c.underruns} x {FRAME_MS:.0f} ms", str(c.sources.get("reply_end")))],
                      "the agent's audio did not arrive in time to play", "chunker.underrun_lead_ms",
                      WhatIf(f"audio in time would remove {ms(stutter)} of stutter", stutter, "measured (call.reply_end)"))
    if c.barge_in_stop is not None and c.barge_in_stop > STOP_BUDGET_MS:
        saving = c.barge_in_stop - STOP_BUDGET_MS
        yield Finding("call_slow_stop", WARNING, x.turn, f"the agent kept talking {ms(c.barge_in_stop)} after the caller cut in",
                      "SLOW STOP", [Fact("BARGE_STOP", ms(c.barge_in_stop), str(c.sources.get("stopped"))),
                                    Fact("clear", ms(c.clear_ms), str(c.sources.get("stopped")))],
                      "the agent detected the barge-in late, or audio already sent kept playing", "input.vad_threshold",
                      WhatIf(f"a stop within {ms(STOP_BUDGET_MS)} would be {ms(saving)} sooner", saving,
                             "measured (call.agent_stopped)"))


ENGINE_RULES: tuple[Rule, ...] = (rule_tts_path, rule_run_on, rule_batched_stream, rule_first_sentence_share,
                                  rule_slow_first_token, rule_slow_tts, rule_leading_silence, rule_playback_gaps,
                                  rule_cut, rule_speech, rule_budgets)
CALL_RULES: tuple[Rule, ...] = (rule_call, rule_leading_silence)


def turn_findings(x: TurnEvidence, b: Breakdown, ctx: SessionContext) -> list[Finding]:
    rules = CALL_RULES if x.call is not None else ENGINE_RULES
    found = [f for rule in rules for f in rule(x, b, ctx)]
    return sorted(found, key=lambda f: SEVERITIES.index(f.severity))


def base_chunker(header: dict[str, Any]) -> ChunkerConfig:
    """The chunker of the trace's recorded preset (fields this version does not know are left out)."""
    recorded = (header.get("preset") or {}).get("chunker") or {}
    known = {f.name for f in fields(ChunkerConfig)}
    return ChunkerConfig(**{k: v for k, v in recorded.items() if k in known})
