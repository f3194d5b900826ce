"""The one clock every timestamp in a trace comes from.

Monotonic, in float milliseconds. Timestamps are taken where data arrives (a token
from the LLM thread, a block handed to the audio device), so this must be cheap and
thread-safe: `time.perf_counter_ns` is both.
"""

from __future__ import annotations

import time


def now_ms() -> float:
    """Monotonic time in milliseconds (arbitrary origin, shared by the whole process)."""
    return time.perf_counter_ns() / 1_000_000.0
