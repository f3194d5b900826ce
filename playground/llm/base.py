"""The LLM provider protocol and the types it streams."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from playground.core.progress import Progress


@dataclass(slots=True)
class Message:
    role: str  # system | user | assistant
    content: str

    def to_json(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass(slots=True)
class Token:
    text: str
    t_ms: float  # monotonic arrival time (core.clock.now_ms), taken where the token arrived


@dataclass
class StreamInfo:
    """What a provider learned about the last stream (recorded in `llm.done`)."""

    finish_reason: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    # How the request reached a network server, e.g. {"reused": True, "requests": 3, "age_ms": 5012.4}
    # or {"reused": False, "connect_ms": 0.4}: a new connection on a later turn is a handshake paid again.
    connection: dict[str, Any] = field(default_factory=dict)
    # Reasoning text streamed apart from the reply (`delta.reasoning_content`): counted, never spoken.
    reasoning_chars: int = 0
    # What of the conversation the prompt held, where the provider had to fit a context window
    # (`playground.llm.context`): messages sent, history messages dropped, and at a turn that
    # dropped more, how many and how ("shift" kept the prompt cache, "block" re-evaluated once).
    context: dict[str, Any] = field(default_factory=dict)

    def to_event(self) -> dict[str, Any]:
        """The fields of the `llm.done` event; the network ones only when there were any."""
        data: dict[str, Any] = {"finish_reason": self.finish_reason, "usage": self.usage}
        if self.connection:
            data["connection"] = self.connection
        if self.reasoning_chars:
            data["reasoning_chars"] = self.reasoning_chars
        if self.context:
            data["context"] = self.context
        return data


class LLMError(RuntimeError):
    """A provider failure, phrased for the user (which provider, what happened, what to do)."""


class LLMProvider(Protocol):
    name: str
    model: str
    info: StreamInfo

    async def load(self, progress: Progress | None = None) -> None:
        """Loads the model / opens the client once per session."""

    def stream(self, messages: list[Message]) -> AsyncIterator[Token]:
        """Streams the reply's tokens; closing the iterator stops generation."""

    async def close(self) -> None: ...
