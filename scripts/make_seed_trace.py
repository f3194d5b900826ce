"""Writes playground/data/traces/seed-turn4.jsonl: the seed's Turn 4 as a playground trace.

    .venv/bin/python scripts/make_seed_trace.py [OUT]

What the seed (phase2-streaming-analysis.md, Turn 4) measured, and is kept exactly:
LLM request at t0, first token at 534 ms, the run-on sentence "You filled out a Facebook
ad ... how we got your info." complete at 6,621 ms (TTFS, with the `sentence` chunker
the seed used, whose `([.!?]\\s+)` needs the whitespace after the period), text to TTS at
6,621 ms, last token at 6,793 ms (LLM_TOTAL), TTS reached by REST fallback (no
persistent session found), so no TTFA was measured.

What the seed does not say, and is reconstructed:
- Token boundaries: split as GPT-style tokenizers do (a word with its leading space,
  punctuation and "'s" separate).
- Token times: the seed logs only the first token and the sentence end, so the
  sentence's tokens are spread evenly from 534 ms; the token after the period (its
  whitespace) arrives at 6,621 ms.
- The reply goes on after the sentence (LLM_TOTAL is 172 ms after TTFS): a short
  invented question, " Does that ring a bell?", spread evenly until 6,793 ms.
- No `tts.audio` events: the seed could not measure when audio arrived (REST fallback),
  so TTFA, TTS_TOTAL and E2E_TOTAL are left unknown rather than invented; the seed's
  reported TTS_TOTAL 1,503 ms and E2E_TOTAL 8,125 ms are kept in the header.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from playground.core import events as ev
from playground.core.metrics import budget_misses, compute_metrics
from playground.core.presets import Preset, preset_from_dict
from playground.export.jsonl import write_trace_jsonl

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "playground" / "data" / "traces" / "seed-turn4.jsonl"
TURN = 4
USER_TEXT = "Well, it..."  # the seed's turn title: the caller's words as its log shows them
SENTENCE = ("You filled out a Facebook ad about creating passive income without adding more hours "
            "to your day\u2014that's how we got your info.")
AFTER = " Does that ring a bell?"  # invented: the seed does not quote the rest of the reply
FIRST_TOKEN_MS = 534.0
SENTENCE_DONE_MS = 6621.0
LAST_TOKEN_MS = 6793.0
SEED_REPORTED = {"llm_ttft": 534, "ttfs": 6621, "ttft_tts": 6621, "ttfa": None, "llm_total": 6793,
                 "tts_total": 1503, "e2e_total": 8125}
TOKEN = re.compile(r" ?[A-Za-z]+|'[a-z]+|[^\sA-Za-z]")


def tokens(text: str) -> list[str]:
    pieces = TOKEN.findall(text)
    assert "".join(pieces) == text, "the tokenizer must cover the text"
    return pieces


# What the seed's agent ran with, as far as the seed tells (keys live in environment variables).
# Only these fields are written: a reader fills in its own defaults for the rest, so the file
# stays the same when presets gain fields.
RECORDED_PRESET = {
    "name": "seed-phase2",
    "agent": {"system_prompt": "(not recorded: the seed's call had 13,215 system characters)"},
    "llm": {"provider": "openai", "model": "grok-4-fast-non-reasoning", "base_url": "https://api.x.ai/v1",
            "api_key_env": "XAI_API_KEY"},
    "tts": {"provider": "elevenlabs", "voice": "", "api_key_env": "ELEVENLABS_API_KEY", "persistent": True,
            "fallback": "rest"},
    "chunker": {"strategy": "sentence"},
}
# The summary's metrics: the seed's own, and what its Turn 4 analysis reasons with.
SUMMARY_KEYS = ("status", "strategy", "llm_ttft", "ttfs", "ttft_tts", "ttfa", "first_play", "llm_total", "tts_total",
                "e2e_total", "chunker_wait", "handoff", "tokens", "tokens_per_s", "chunks", "spoken_chunks",
                "tts_path", "tts_path_reason")


def recorded_preset() -> Preset:
    sections = {k: v for k, v in RECORDED_PRESET.items() if k != "name"}
    return preset_from_dict(sections, name=RECORDED_PRESET["name"], source="seed/phase2-streaming-analysis.md")


def turn_events() -> list[ev.TraceEvent]:
    sentence, after = tokens(SENTENCE), tokens(AFTER)
    step = (SENTENCE_DONE_MS - FIRST_TOKEN_MS) / len(sentence)
    times = [FIRST_TOKEN_MS + i * step for i in range(len(sentence))]
    after_step = (LAST_TOKEN_MS - SENTENCE_DONE_MS) / (len(after) - 1)
    times += [SENTENCE_DONE_MS + i * after_step for i in range(len(after))]
    preset = recorded_preset()

    def event(t_ms: float, kind: type[ev.TraceEvent], **fields) -> ev.TraceEvent:
        return kind(turn=TURN, t_ms=round(t_ms, 3), **fields)

    events = [
        event(0.0, ev.TurnStart, text=USER_TEXT, input="speech", strategy="sentence",
              chunker=RECORDED_PRESET["chunker"]),
        event(0.0, ev.TtsSession, action="fallback", path="fallback_rest", provider="elevenlabs",
              reason="no persistent TTS session found for the call (active sessions: [])"),
        event(0.0, ev.LlmRequest, provider="openai", model=preset.llm.model),
    ]
    events += [event(t, ev.LlmToken, i=i, text=text) for i, (t, text) in enumerate(zip(times, sentence + after))]
    events += [
        event(SENTENCE_DONE_MS, ev.Chunk, index=0, text=SENTENCE, raw=SENTENCE, reason="strong",
              start_ms=FIRST_TOKEN_MS, input_ms=SENTENCE_DONE_MS, token_start=0, token_end=len(sentence) - 1),
        event(SENTENCE_DONE_MS, ev.TtsSend, chunk=0, chars=len(SENTENCE)),
        event(LAST_TOKEN_MS, ev.LlmDone, tokens=len(sentence) + len(after), finish_reason="stop", usage=ev.Usage(),
              text=SENTENCE + AFTER),
        event(LAST_TOKEN_MS, ev.Chunk, index=1, text=AFTER.strip(), raw=AFTER, reason="flush",
              start_ms=SENTENCE_DONE_MS, input_ms=LAST_TOKEN_MS, token_start=len(sentence),
              token_end=len(sentence) + len(after) - 1),
        event(LAST_TOKEN_MS, ev.TtsSend, chunk=1, chars=len(AFTER.strip())),
    ]
    events.sort(key=lambda e: e.t_ms)  # stable: a chunk stays after the token that completed it
    metrics = compute_metrics(events)
    summary = metrics.to_json()
    events.append(event(LAST_TOKEN_MS, ev.TurnSummary, metrics={k: summary[k] for k in SUMMARY_KEYS},
                        budget_misses={k: v[0] for k, v in budget_misses(metrics, preset.budgets).items()}))
    return events


def header() -> dict:
    return {
        "started_at": "2025-11-20T03:03:31+00:00",
        "preset": RECORDED_PRESET,
        "providers": {"llm": {"name": "openai", "model": "grok-4-fast-non-reasoning"},
                      "tts": {"name": "elevenlabs", "voice": ""}, "audio": "phone call"},
        "reconstructed": {
            "from": "seed/phase2-streaming-analysis.md, Turn 4",
            "by": "scripts/make_seed_trace.py (its docstring says what is measured and what is reconstructed)",
            "token_times": "first token and sentence end as measured; tokens in between spread evenly",
            "seed_reported_ms": SEED_REPORTED,
        },
    }


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else DEFAULT_OUT
    write_trace_jsonl(out, header(), turn_events())
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
