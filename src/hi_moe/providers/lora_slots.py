"""A model of a vLLM server's LoRA slots, for `MockProvider(lora_slots=...)`.

vLLM holds at most `--max-loras` adapters in its GPU slots. A request for an adapter that is not
loaded waits until a slot is free of running requests, then pays for loading it (evicting the
least recently used adapter); requests for a loaded adapter, and for the base model, go at once.
So latency grows when more adapters are in flight than there are slots, which is what the
Fleet's adapter-aware scheduling avoids, and what its tests measure offline.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

__all__ = ["LoraSlots"]


class LoraSlots:
    def __init__(self, slots: int, load_s: float = 0.0) -> None:
        if slots < 1:
            raise ValueError("lora_slots must be at least 1")
        if load_s < 0:
            raise ValueError("lora_load_s must not be negative")
        self.slots = slots
        self.load_s = load_s
        self.loads = 0
        """Adapters loaded into a slot so far (the first load of each included)."""
        self._resident: OrderedDict[str, None] = OrderedDict()  # least recently used first
        self._in_flight: dict[str, int] = defaultdict(int)
        self._changed = asyncio.Condition()

    def _busy(self) -> int:
        return sum(1 for name in self._resident if self._in_flight[name] > 0)

    @asynccontextmanager
    async def use(self, adapter: str | None) -> AsyncIterator[None]:
        """Hold `adapter`'s slot for one request (the base model needs none)."""
        if adapter is None:
            yield
            return
        async with self._changed:
            if adapter in self._resident:
                self._resident.move_to_end(adapter)
                load = False
            else:
                # A slot is free when fewer adapters than slots have requests running.
                await self._changed.wait_for(
                    lambda: adapter in self._resident or self._busy() < self.slots
                )
                load = adapter not in self._resident
                if load:
                    idle = [name for name in self._resident if self._in_flight[name] == 0]
                    if len(self._resident) >= self.slots and idle:
                        del self._resident[idle[0]]
                    self._resident[adapter] = None
                    self.loads += 1
            self._in_flight[adapter] += 1
        try:
            if load and self.load_s > 0:
                await asyncio.sleep(self.load_s)
            yield
        finally:
            async with self._changed:
                self._in_flight[adapter] -= 1
                self._changed.notify_all()
