"""A limiter's reading of the service's clock, and the claims a dropping floor moves."""

from agora_chat_async._service_clock import ChargedClaims
from agora_chat_async._window_rules import Answered, ClockCheck, DelayFloor


def charged(key: float, anchor: float) -> Answered:
    return Answered(DelayFloor(), ClockCheck(), anchor, key=key)


def test_claims_are_forgotten_once_answered_longer_than_any_window_ago():
    claims = ChargedClaims[str](longest=1.0)
    for step in range(1000):  # answers for 100 s, the floor never dropping
        at = step / 10
        claims.add(f"c{step}", charged(at + 0.05, at - 0.05), started=at - 0.1, done=at)
    assert len(claims) <= 11  # the last second's, not all of them


def test_a_dropping_floor_moves_the_claims_later_never_earlier():
    claims = ChargedClaims[str](longest=1.0)
    claims.add("a", charged(0.062, 0.002), started=0.0, done=0.1)
    claims.add("b", Answered(DelayFloor(), ClockCheck(), None), started=0.0, done=0.1)
    assert claims.moved(0.01, now=0.2) == [("a", 0.052, False)]
    assert claims.moved(0.03, now=0.2) == []  # a higher floor moves nothing back
    assert claims.moved(0.01, now=5.0) == []  # it has left every window


def test_the_first_floor_moves_the_claims_charged_for_want_of_one_earlier_once():
    claims = ChargedClaims[str](longest=1.0)
    floorless = Answered(DelayFloor(), ClockCheck(), 0.3, key=0.252, floorless=True)
    claims.add("cold", floorless, started=0.0, done=0.3)
    assert claims.moved(0.1, now=0.5) == [("cold", 0.152, True)]
    # Now charged against that floor: a higher one later never moves it back.
    assert claims.moved(0.05, now=0.5) == [("cold", 0.202, False)]
    assert claims.moved(0.2, now=0.5) == []
