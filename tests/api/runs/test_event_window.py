"""The packed event window must answer every read exactly as a plain list of events would."""

import random

import pytest

from chainserve.api.runs.event_window import MAX_BLOCK, EventWindow
from chainserve.api.runs.log import RunEvent


def _names(rng: random.Random) -> str:
    return rng.choice(["data"] * 8 + ["metadata", "sources", "end"])


@pytest.mark.parametrize("keep", [1, 3, 10, 100, 257, 10_000])
def test_every_read_matches_a_plain_list_of_the_same_events(keep: int) -> None:
    rng = random.Random(keep)
    window = EventWindow(keep)
    events: list[RunEvent] = []
    for seq in range(min(3 * keep + 150, 1_500)):
        name = _names(rng)
        data = rng.choice(
            ['"a"', '"é✓"', '"\\n"', "", '{"x":[1]}', '"' + "w" * rng.randint(0, 40) + '"']
        )
        window.append(name, data)
        events.append(RunEvent(seq, name, data))
        assert window.last_seq == seq
        assert keep <= len(window) < 2 * keep or len(window) == seq + 1
        recent = rng.randint(max(-1, seq - 2 * MAX_BLOCK), seq)
        afters = {seq, seq - 1, recent}
        if seq % 50 == 0:  # reads from the oldest end are long; often enough to cover them
            afters |= {-1, window.first_seq - 2, window.first_seq - 1, window.first_seq}
        for after in afters:
            got = window.since(after)
            if after + 1 < window.first_seq:
                assert got is None
            else:
                assert got == events[after + 1 :]


def test_a_reader_ahead_of_the_window_gets_nothing_rather_than_an_error() -> None:
    window = EventWindow(100)
    window.append("metadata", "{}")
    assert window.since(5) == []


def test_trimmed_events_are_reported_gone() -> None:
    window = EventWindow(10)
    for i in range(40):
        window.append("data", str(i))
    assert window.since(-1) is None
    assert [e.data for e in window.since(36) or []] == ["37", "38", "39"]
    assert window.first_seq > 0
    assert all(seq >= window.first_seq for seq in window.names)
