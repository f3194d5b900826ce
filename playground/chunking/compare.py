"""What-if chunking: a recorded token stream run through a chunker configuration.

Tokens are fed at their recorded times and deadlines fire between them exactly as they
would have live, so TTFS and the chunk sizes are what that strategy would have produced
on the same LLM behaviour.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from playground.chunking.chunker import Chunk, Chunker
from playground.core import events as ev
from playground.core.presets import STRATEGIES, ChunkerConfig

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
    tokens = [(e.t_ms, e.get("text", "")) for e in turn_events if e.type == ev.LLM_TOKEN and e.get("text")]
    done = next((e.t_ms for e in turn_events if e.type == ev.LLM_DONE), None)
    return tokens, done


def rechunk(tokens: Sequence[RecordedToken], end_ms: float | None, config: ChunkerConfig) -> Rechunked:
    chunker = Chunker(config)
    chunks: list[Chunk] = []
    for t, text in tokens:
        deadline = chunker.next_deadline()
        while deadline is not None and deadline <= t:  # no token came in time: the deadline fires
            chunks += chunker.poll(deadline)
            deadline = chunker.next_deadline()
        chunks += chunker.push(text, t)
    last = tokens[-1][0] if tokens else 0.0
    chunks += chunker.flush(end_ms if end_ms is not None else last)
    return Rechunked(config.strategy, chunks, tokens[0][0] if tokens else None)


def rechunk_all(tokens: Sequence[RecordedToken], end_ms: float | None, config: ChunkerConfig) -> list[Rechunked]:
    """Every strategy, with the other chunker parameters as given."""
    return [rechunk(tokens, end_ms, replace(config, strategy=s)) for s in STRATEGIES]
