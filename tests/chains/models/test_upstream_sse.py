"""The provider's SSE parser: linear in the bytes it receives, and bounded per event."""

from collections.abc import AsyncIterator

import pytest

from chainserve.chains.models.upstream_sse import EventTooLargeError, sse_events

pytestmark = pytest.mark.asyncio


class CountingBlock(bytes):
    """A block that counts the bytes scanned for line ends in it."""

    scanned = 0

    def split(self, sep: object = None, maxsplit: int = -1) -> list[bytes]:  # type: ignore[override]
        CountingBlock.scanned += len(self)
        return super().split(sep, maxsplit)  # type: ignore[arg-type]


async def _blocks(*blocks: bytes) -> AsyncIterator[bytes]:
    for block in blocks:
        yield CountingBlock(block)


async def test_a_long_line_in_many_blocks_is_scanned_once_not_once_per_block() -> None:
    """The old parser re-split everything pending on every read (quadratic in a long line)."""
    CountingBlock.scanned = 0
    blocks = [b"data: " + b"x" * 1000, *([b"x" * 1000] * 2000), b"\n\n"]
    events = [e async for e in sse_events(_blocks(*blocks), max_event_bytes=10**7)]
    assert events == [(b"", b"x" * 2_001_000)]
    assert CountingBlock.scanned == sum(len(b) for b in blocks)


async def test_an_event_over_the_limit_raises_before_more_is_buffered() -> None:
    fed = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal fed
        yield b"data: "
        while True:
            fed += 4096
            yield b"x" * 4096

    with pytest.raises(EventTooLargeError, match="65536-byte limit"):
        async for _ in sse_events(endless(), max_event_bytes=65536):
            pass
    assert fed <= 65536 + 4096


async def test_many_data_lines_count_towards_one_events_limit() -> None:
    lines = b"data: 0123456789\n" * 100
    with pytest.raises(EventTooLargeError):
        async for _ in sse_events(_blocks(lines + b"\n"), max_event_bytes=500):
            pass


async def test_lines_split_anywhere_across_blocks_parse_as_whole_events() -> None:
    wire = b'event: x\r\ndata: {"a":\ndata: 1}\n\n: comment\ndata: [DONE]\n\n'
    blocks = [wire[i : i + 3] for i in range(0, len(wire), 3)]
    events = [e async for e in sse_events(_blocks(*blocks))]
    assert events == [(b"x", b'{"a":\n1}'), (b"", b"[DONE]")]
