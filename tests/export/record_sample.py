"""Records playground/bench/data/session.jsonl, the real session the export benchmark and the
export tests are built from: the offline preset (SmolLM2 + Piper, null audio output), four
answered turns with replies long enough to give ~150 events each, and one turn cancelled
mid-playback as a user pressing Esc would.

    .venv/bin/python tests/export/record_sample.py      # about 3 minutes on 2 cores

tests/export/data/voice.jsonl, the spoken turn, was recorded with the CLI from speech that
Piper made (tests/speech.py: 0.5 s silence, "What time does the museum open on Sunday?", 1.5 s
silence):

    playground run --mic-file question.wav --mode hands_free --no-audio --set llm.max_tokens=30 --trace voice.jsonl
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from playground.core.presets import load_preset
from playground.engine.build import open_session
from playground.export.jsonl import open_trace_writer

OUT = Path(__file__).resolve().parents[2] / "playground" / "bench" / "data" / "session.jsonl"
QUESTIONS = [
    "Tell me about the history of the telephone.",
    "What should I pack for a week of hiking in the mountains?",
    "Explain how a bicycle gear system works.",
    "Describe your favourite city and why people visit it.",  # cancelled mid-playback
    "Thanks, can you summarise what we talked about?",
]
# Long replies, so a turn has the token count of a real conversational answer.
SYSTEM_PROMPT = "You are a knowledgeable guide on a phone call. Answer in detail, in several full sentences."
CANCELLED_TURN = 4
CANCEL_AFTER_S = 1.5


async def record() -> None:
    preset = load_preset("local", ["llm.max_tokens=120", f"agent.system_prompt={SYSTEM_PROMPT}"])
    session = await open_session(preset, audio="null", progress=lambda m: print("…", m))
    writer = open_trace_writer(OUT, session.trace.header)
    writer.follow(session.trace)
    try:
        for number, text in enumerate(QUESTIONS, 1):
            task = session.start_turn(text)
            if number == CANCELLED_TURN:
                await asyncio.sleep(CANCEL_AFTER_S)
                session.cancel_turn("user pressed Esc")
            metrics = await task
            print(f"turn {number}: {metrics.status}, {metrics.tokens} tokens, {metrics.chunks} chunks")
    finally:
        await session.close()
        writer.close()
    print(f"written {OUT}")


if __name__ == "__main__":
    asyncio.run(record())
