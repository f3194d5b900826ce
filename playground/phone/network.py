"""The network between the phone and the agent, simulated: a one-way delay with jitter, applied
by the caller to every message in both directions, so its numbers include the network leg.

A WebSocket runs over TCP, so messages are delayed but never reordered: each one leaves the
delay line at `latency + U(-jitter, +jitter)` after it entered, and never before the one ahead
of it. On 127.0.0.1 with no profile, messages pass straight through.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from playground.core.clock import now_ms


@dataclass(frozen=True)
class NetworkProfile:
    name: str
    latency_ms: float  # one way
    jitter_ms: float  # each message's delay varies by up to this much around latency_ms

    def to_json(self) -> dict[str, Any]:
        return {"profile": self.name, "latency_ms": self.latency_ms, "jitter_ms": self.jitter_ms}


# One-way figures for the leg between a carrier's media edge and the agent.
PROFILES: dict[str, NetworkProfile] = {p.name: p for p in (
    NetworkProfile("lan", 1.0, 0.5),
    NetworkProfile("wifi", 8.0, 5.0),
    NetworkProfile("4g", 45.0, 15.0),
    NetworkProfile("intercontinental", 90.0, 10.0),
)}


def network_profile(name: str | None, latency_ms: float | None = None,
                    jitter_ms: float | None = None) -> NetworkProfile | None:
    """The profile `name` (None: no simulated network), with `latency_ms` / `jitter_ms` overriding it."""
    if name is None and latency_ms is None and jitter_ms is None:
        return None
    if name is not None and name not in PROFILES:
        raise ValueError(f"--network: unknown profile {name!r} (choose {', '.join(PROFILES)})")
    base = PROFILES[name] if name is not None else NetworkProfile("custom", 0.0, 0.0)
    latency = base.latency_ms if latency_ms is None else latency_ms
    jitter = base.jitter_ms if jitter_ms is None else jitter_ms
    if latency < 0 or jitter < 0:
        raise ValueError("--latency-ms and --jitter-ms must not be negative")
    adjusted = name is not None and (latency, jitter) != (base.latency_ms, base.jitter_ms)
    return NetworkProfile(f"{name} (adjusted)" if adjusted else base.name, latency, jitter)


class DelayLine:
    """Delivers items to `deliver` after the profile's delay, in order. Without a profile,
    `put` delivers at once (awaited), so a plain call pays nothing for it."""

    def __init__(self, profile: NetworkProfile | None, deliver: Callable[[Any], Awaitable[None]],
                 seed: int = 0) -> None:
        self.profile = profile
        self._deliver = deliver
        self._random = random.Random(seed)
        self._queue: asyncio.Queue[tuple[float, Any]] = asyncio.Queue()
        self._last_due = 0.0
        self._task: asyncio.Task[None] | None = None
        if profile is not None:
            self._task = asyncio.create_task(self._run(), name="network-delay")

    def _delay_ms(self) -> float:
        assert self.profile is not None
        jitter = self.profile.jitter_ms
        return max(0.0, self.profile.latency_ms + (self._random.uniform(-jitter, jitter) if jitter else 0.0))

    async def put(self, item: Any) -> None:
        if self._task is None:
            await self._deliver(item)
            return
        due = max(now_ms() + self._delay_ms(), self._last_due)
        self._last_due = due
        self._queue.put_nowait((due, item))

    async def _run(self) -> None:
        while True:
            due, item = await self._queue.get()
            wait_ms = due - now_ms()
            if wait_ms > 0:
                await asyncio.sleep(wait_ms / 1000.0)
            await self._deliver(item)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
