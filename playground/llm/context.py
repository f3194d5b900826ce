"""Keeping a long conversation inside a local model's context window without losing its prompt cache.

llama.cpp reuses the evaluated tokens of the previous call up to the first token that
differs. Dropping the oldest message from the front of the prompt moves every token
after the system prompt, so the whole prompt is evaluated again on every later turn
(about 7 s for 1,800 tokens on 2 cores): the seed's "prefix cache miss", built in. The
window therefore moves in one of two ways, recorded in `llm.done`'s `context`:

- `shift`: the dropped messages are removed from llama.cpp's KV cache and the tokens
  after them are moved down (a RoPE position shift, as llama.cpp's own context shift
  does). Nothing is evaluated again, so a drop only has to be as large as needed.
- `block`: where the cache cannot be shifted (a model that does not support it, or a
  cache that does not hold the dropped messages), the window drops a large block at
  once, down to `BLOCK_KEEP` of the room for history, so its start stays put for many
  turns and the full evaluation is paid rarely.

The window always starts at a user message, and only whole messages are dropped.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

# A block drop keeps at most this share of the room the budget leaves for history.
BLOCK_KEEP = 0.5


@dataclass(frozen=True, slots=True)
class WindowPlan:
    previous_start: int  # first history message the last prompt held (0 after a reset)
    start: int  # first history message this prompt must hold to fit the budget

    @property
    def trimmed(self) -> int:
        return self.start - self.previous_start


def _digest(history: Sequence[dict[str, str]], end: int) -> str:
    h = hashlib.blake2b(digest_size=16)
    for message in history[:end]:
        h.update(message["role"].encode())
        h.update(b"\0")
        h.update(message["content"].encode("utf-8", "replace"))
        h.update(b"\1")
    return h.hexdigest()


class ContextWindow:
    """Which part of the history goes into the prompt, turn after turn.

    It remembers where the last window started (and what it had dropped), so the start
    only moves forward when the budget requires it; a history that was cleared or
    rewritten (a new conversation, a re-run turn) starts over from its beginning.
    """

    def __init__(self) -> None:
        self.start = 0
        self._dropped_digest = _digest([], 0)

    def plan(self, history: Sequence[dict[str, str]], costs: Sequence[int], fixed: int, budget: int) -> WindowPlan:
        """The smallest move of the window that fits `fixed` + the kept history's costs in `budget`."""
        previous = self.start
        if previous > len(history) or _digest(history, previous) != self._dropped_digest:
            previous = 0  # not the conversation the window was moved over
        return WindowPlan(previous, _exchange_start(history, _fit_from(costs, previous, budget - fixed)))

    def block_start(self, history: Sequence[dict[str, str]], costs: Sequence[int], fixed: int, budget: int,
                    start: int) -> int:
        """A start at or after `start` that leaves the history at most BLOCK_KEEP of its room."""
        return _exchange_start(history, _fit_from(costs, start, int((budget - fixed) * BLOCK_KEEP)))

    def commit(self, history: Sequence[dict[str, str]], start: int) -> None:
        self.start = start
        self._dropped_digest = _digest(history, start)


def _fit_from(costs: Sequence[int], start: int, room: int) -> int:
    total = sum(costs[start:])
    while start < len(costs) and total > room:
        total -= costs[start]
        start += 1
    return start


def _exchange_start(history: Sequence[dict[str, str]], start: int) -> int:
    while start < len(history) and history[start]["role"] != "user":
        start += 1
    return start
