"""The emulator's quota counters, exactly: sliding, fixed and bucket, and the peak tracker."""

from __future__ import annotations

import pytest

from agora_chat_async import Rate
from agora_chat_async.testing._quota import PeakTracker, make_counter


def test_a_sliding_window_frees_units_exactly_one_window_after_they_started():
    counter = make_counter("sliding", Rate(10, per=1))
    assert counter.try_acquire(0.0, 6)
    assert counter.try_acquire(0.5, 4)
    assert not counter.try_acquire(0.99, 1)  # refused, and not recorded
    assert counter.try_acquire(1.0, 6)  # the first 6 left at exactly 1.0
    assert not counter.try_acquire(1.4, 1)
    assert counter.try_acquire(1.5, 4)


def test_a_fixed_window_starts_afresh_at_each_multiple_of_per():
    counter = make_counter("fixed", Rate(10, per=1))
    assert counter.try_acquire(0.9, 10)
    assert not counter.try_acquire(0.99, 1)
    assert counter.try_acquire(1.0, 10)  # a new window: 20 units within 0.1 s
    assert not counter.try_acquire(1.99, 1)


def test_a_token_bucket_starts_full_and_refills_at_the_rate():
    counter = make_counter("token_bucket", Rate(10, per=1))
    assert counter.try_acquire(0.0, 10)
    assert not counter.try_acquire(0.05, 1)  # half a token so far
    assert counter.try_acquire(0.1, 1)
    assert counter.try_acquire(0.6, 5)
    assert not counter.try_acquire(0.6, 1)
    assert counter.try_acquire(100.0, 10)  # never more than full
    assert not counter.try_acquire(100.0, 1)


def test_an_unknown_policy_is_refused():
    with pytest.raises(ValueError, match="policy must be one of"):
        make_counter("leaky", Rate(1, per=1))  # type: ignore[arg-type]


def test_the_peak_is_the_most_units_in_any_window_whatever_was_refused():
    tracker = PeakTracker(per=1.0)
    for at, units in ((0.0, 4), (0.5, 4), (0.9, 2), (1.0, 3), (2.5, 1)):
        tracker.record(at, units)
    assert tracker.peak == 10  # (0.0, 0.9]: 4 + 4 + 2; at 1.0 the first 4 have left
    assert tracker.total == 14
