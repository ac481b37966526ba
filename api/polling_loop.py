"""A polling loop that runs as a task of the event loop until closed, and can be woken early.

The WhatsApp ``Ingester`` and the ``OutboxDispatcher`` poll the database for work. ``start`` runs the
subclass's ``_run`` as a task; ``kick`` says there is work now (a row stored in this process), so the
loop need not wait for its next poll; ``close`` asks the loop to end (``_run`` checks ``_closing``) and
waits for it.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from typing import ClassVar


class PollingLoop(ABC):
    task_name: ClassVar[str]

    def __init__(self) -> None:
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=self.task_name)

    def kick(self) -> None:
        """There may be new work: look now rather than at the next poll."""
        self._wake.set()

    async def close(self) -> None:
        """End the loop and wait for it; an error it ended with is not raised again here."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def _wait_for_kick(self, timeout: float) -> bool:
        """Until ``kick`` (True) or ``timeout`` seconds (False); either way the next wait waits again."""
        try:
            await asyncio.wait_for(self._wake.wait(), timeout=timeout)
            kicked = True
        except TimeoutError:
            kicked = False
        self._wake.clear()
        return kicked

    @abstractmethod
    async def _run(self) -> None:
        """Rounds of work until ``_closing``, waiting with ``_wait_for_kick`` in between."""
