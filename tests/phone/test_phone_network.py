"""The simulated network leg: delayed by latency ± jitter, never reordered (a WebSocket is TCP)."""

from __future__ import annotations

import asyncio
from statistics import mean

import pytest

from playground.core.clock import now_ms
from playground.phone.network import PROFILES, DelayLine, NetworkProfile, network_profile


@pytest.mark.serial  # the loop's wake-ups, to a few ms (a mean of 40.1 ms against 40 on six busy workers)
async def test_messages_arrive_late_by_latency_and_jitter_and_in_order():
    arrived: list[tuple[int, float]] = []

    async def deliver(item) -> None:
        arrived.append((item[0], now_ms() - item[1]))

    line = DelayLine(NetworkProfile("test", 30.0, 20.0), deliver, seed=4)
    for index in range(100):
        await line.put((index, now_ms()))
        await asyncio.sleep(0.002)
    await asyncio.sleep(0.2)
    await line.close()
    assert [index for index, _delay in arrived] == list(range(100))
    delays = [delay for _index, delay in arrived]
    assert min(delays) >= 10 - 1 and max(delays) <= 50 + 15  # the loop wakes a little late, never early
    assert 27 <= mean(delays) <= 40
    assert max(delays) - min(delays) > 15  # jitter: not a fixed delay


async def test_without_a_profile_a_message_passes_at_once():
    arrived = []

    async def deliver(item) -> None:
        arrived.append(item)

    line = DelayLine(None, deliver)
    await line.put("now")
    assert arrived == ["now"]
    await line.close()


def test_profiles_by_name_with_explicit_overrides():
    assert network_profile(None) is None
    assert network_profile("4g") == PROFILES["4g"]
    assert network_profile("4g", latency_ms=60) == NetworkProfile("4g (adjusted)", 60, PROFILES["4g"].jitter_ms)
    assert network_profile(None, latency_ms=40) == NetworkProfile("custom", 40, 0)
    with pytest.raises(ValueError, match="unknown profile 'moon'"):
        network_profile("moon")
    with pytest.raises(ValueError, match="must not be negative"):
        network_profile(None, jitter_ms=-1)
