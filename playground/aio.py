"""Small asyncio helpers shared by providers that hand work to threads."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any


async def iterate_queue(queue: asyncio.Queue[Any], end: object) -> AsyncIterator[Any]:
    """Yields a queue's items until `end`; an exception put in the queue is raised here,
    in the consumer, where it can fail the turn."""
    while True:
        item = await queue.get()
        if item is end:
            return
        if isinstance(item, BaseException):
            raise item
        yield item
