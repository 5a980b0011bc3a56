"""Ranges: a set of positions as sorted, disjoint ranges, checked against a plain set."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from agora_chat_async._ranges import Ranges

OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(0, 60), st.integers(0, 8)),
        st.tuples(st.just("discard"), st.integers(0, 70), st.just(0)),
    ),
    max_size=60,
)


@given(operations=OPERATIONS)
def test_ranges_hold_exactly_the_positions_a_set_holds(operations):
    ranges, expected = Ranges(), set()
    for kind, position, width in operations:
        if kind == "add":
            ranges.add_range(position, position + width)
            expected.update(range(position, position + width))
        else:
            ranges.discard(position)
            expected.discard(position)
        assert set(ranges) == expected
        assert len(ranges) == len(expected)
        assert all((p in ranges) == (p in expected) for p in range(-1, 72))
        pairs = ranges.pairs()
        # Sorted, disjoint and never touching: the smallest form.
        assert all(a < b for a, b in pairs)
        assert all(b1 < a2 for (_, b1), (a2, _) in itertools.pairwise(pairs))


def test_a_million_consecutive_positions_are_one_range():
    ranges = Ranges()
    for position in range(0, 1_000_000, 600):
        ranges.add_range(position, position + 600)
    assert ranges.pairs() == [(0, 1_000_200)]
    assert Ranges(ranges.pairs()) == ranges
