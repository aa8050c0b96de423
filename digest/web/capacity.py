"""At most a few requests that match topics at a time, per web process.

Matching is pure Python: while a preview runs it holds the interpreter (the GIL), and every other
request of the process waits for its turn between the preview's time slices. So the pages that
match topics (the live preview, the settings page, the full edition) run through `Capacity`: at
most `concurrent` at once, in the thread pool; the others wait in the event loop, holding neither
a thread nor a database connection; past `waiting` of them a request is refused at once (Busy),
so a flood is answered 503 instead of queued without end. The landing page, the subscribe form
and the links never wait here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import anyio
import anyio.to_thread

T = TypeVar("T")


class Busy(Exception):
    """Too many requests are already waiting to match topics."""


class Capacity:
    def __init__(self, concurrent: int = 1, waiting: int = 16) -> None:
        self.slots = anyio.CapacityLimiter(concurrent)
        self.waiting = waiting

    async def run(self, work: Callable[[], T]) -> T:
        state = self.slots.statistics()
        if state.borrowed_tokens >= state.total_tokens and state.tasks_waiting >= self.waiting:
            raise Busy("too many requests are matching topics: try again in a moment")
        return await anyio.to_thread.run_sync(work, limiter=self.slots)
