"""A run's recent events, kept compact: what the in-memory run log holds per open stream.

A streamed token's event is a few bytes of JSON, but as its own `str` (plus a list slot) it costs
about 70 bytes, and a `RunEvent` object per event more again, tracked by the garbage collector.
With a thousand open streams that was tens of kilobytes per stream and a young generation that
filled with events, so every collection paused every stream. Here the newest events are kept
as strings and every full block of them is packed into one string plus an array of offsets;
events are rebuilt only when a reader asks for them, usually just the newest few.
"""

from array import array
from itertools import accumulate

from chainserve.api.runs.log import RunEvent

DATA = "data"
MAX_BLOCK = 64


class EventWindow:
    """Events `first_seq` .. `last_seq`, contiguous; trimmed from the oldest end in blocks.

    Keeps at least the newest `keep` events: trimming drops whole packed blocks, so a window
    holds between `keep` and `2 * keep` events.
    """

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.block = max(1, min(MAX_BLOCK, keep // 4))
        self.first_seq = 0
        self.packed: list[tuple[str, array[int]]] = []
        """Full blocks of `block` events: their data joined, and `block + 1` offsets into it."""
        self.tail: list[str] = []
        self.names: dict[int, str] = {}
        """The event name by seq, for the few events that are not `data` events."""

    def __len__(self) -> int:
        return len(self.packed) * self.block + len(self.tail)

    @property
    def last_seq(self) -> int:
        return self.first_seq + len(self) - 1

    def append(self, name: str, data: str) -> None:
        if name != DATA:
            self.names[self.first_seq + len(self)] = name
        self.tail.append(data)
        if len(self.tail) == self.block:
            offsets = array("I", [0])
            offsets.extend(accumulate(len(text) for text in self.tail))
            self.packed.append(("".join(self.tail), offsets))
            self.tail = []
        if len(self) >= 2 * self.keep:
            self._trim()

    def _trim(self) -> None:
        drop = (len(self) - self.keep) // self.block
        del self.packed[:drop]
        self.first_seq += drop * self.block
        for seq in [seq for seq in self.names if seq < self.first_seq]:
            del self.names[seq]

    def since(self, after: int) -> list[RunEvent] | None:
        """Every event after seq `after`; None if some of them were already trimmed away."""
        start = after + 1 - self.first_seq
        if start < 0:
            return None
        data: list[str] = []
        index = start // self.block
        skip = start - index * self.block
        for text, offsets in self.packed[index:]:
            data.extend(text[offsets[i] : offsets[i + 1]] for i in range(skip, self.block))
            skip = 0
        data.extend(self.tail[max(0, start - len(self.packed) * self.block) :])
        names = self.names
        return [
            RunEvent(seq, names.get(seq, DATA), text)
            for seq, text in enumerate(data, start=after + 1)
        ]
