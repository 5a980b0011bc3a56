"""The emulator's route table: raw segments, path parameters, 404 and 405."""

from __future__ import annotations

import pytest

from agora_chat_async.testing._emulator._routes import APP_ROUTES, EMULATOR_ROUTES
from agora_chat_async.testing._emulator._rules import Problem


def test_a_path_parameter_is_one_decoded_segment():
    route, params = APP_ROUTES.match("DELETE", ["users", "a/b", "user_channel"])
    assert route.endpoint == "delete_conversation"
    assert params == {"username": "a/b"}
    route, params = APP_ROUTES.match("POST", ["messages", "chatrooms"])
    assert (route.endpoint, params) == ("rooms", {"resource": "chatrooms"})


def test_another_method_on_a_known_path_is_405_an_unknown_path_404():
    with pytest.raises(Problem) as caught:
        APP_ROUTES.match("GET", ["messages", "users"])
    assert (caught.value.status, caught.value.error) == (405, "method_not_allowed")
    with pytest.raises(Problem) as caught:
        APP_ROUTES.match("POST", ["messages", "nobody"])
    assert (caught.value.status, caught.value.description) == (
        404,
        "no resource at /messages/nobody",
    )


def test_the_emulator_s_own_paths_answer_404_to_another_method():
    assert EMULATOR_ROUTES.match("GET", ["stats"])[0].endpoint == "stats"
    with pytest.raises(Problem) as caught:
        EMULATOR_ROUTES.match("GET", ["reset"])
    assert (caught.value.status, caught.value.description) == (404, "no such emulator resource")
