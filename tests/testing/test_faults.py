"""Fault settings: validated probabilities, and seeded latency."""

from __future__ import annotations

import random

import pytest

from agora_chat_async.testing import Faults


@pytest.mark.parametrize("field", ["refuse_503", "process_then_500", "drop_connection"])
@pytest.mark.parametrize("value", [-0.1, 1.5])
def test_probabilities_must_be_between_0_and_1(field, value):
    with pytest.raises(ValueError, match=f"{field} must be a probability"):
        Faults(**{field: value})


def test_latency_is_fixed_plus_seeded_jitter():
    assert Faults(latency=0.25).delay(random.Random(1)) == 0.25
    faults = Faults(latency=0.1, latency_jitter=0.2)
    first = [faults.delay(random.Random(7)) for _ in range(3)]
    assert first[0] == first[1] == first[2]  # the same seed, the same delay
    draws = [faults.delay(random.Random(seed)) for seed in range(50)]
    assert all(0.1 <= d <= 0.3 for d in draws)
    assert len(set(draws)) > 1
