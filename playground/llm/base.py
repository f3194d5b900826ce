"""The LLM provider protocol and the types it streams."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from playground.core.events import LlmConnection, LlmContext, Usage
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
    """What a provider learned about the last stream (recorded in `llm.done`, whose fields say more)."""

    finish_reason: str | None = None
    usage: Usage = field(default_factory=Usage)
    # How the request reached a network server: a new connection on a later turn is a handshake paid again.
    connection: LlmConnection | None = None
    # Reasoning text streamed apart from the reply (`delta.reasoning_content`): counted, never spoken.
    reasoning_chars: int = 0
    # What of the conversation the prompt held, where the provider had to fit a context window.
    context: LlmContext | None = None

    def to_event(self) -> dict[str, Any]:
        """The fields of the `llm.done` event it describes."""
        return {"finish_reason": self.finish_reason, "usage": self.usage, "connection": self.connection,
                "reasoning_chars": self.reasoning_chars, "context": self.context}


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
