import re

import pytest

from agora_chat_async import (
    AgoraChatError,
    APIError,
    AuthenticationError,
    BadRequestError,
    ForbiddenError,
    NotFoundError,
    PayloadTooLargeError,
    QuotaExhaustedError,
    RateLimitedError,
    ServerError,
    ValidationError,
)
from agora_chat_async._exceptions import api_error_class, excerpt, redact


@pytest.mark.parametrize(
    ("status", "error", "description", "expected"),
    [
        (400, "illegal_argument", "", BadRequestError),
        (401, "auth_bad_access_token", "Unable to authenticate", AuthenticationError),
        (403, "forbidden_op", "", ForbiddenError),
        (403, "", "message send reach limit", RateLimitedError),
        (404, "service_resource_not_found", "", NotFoundError),
        (413, "", "", PayloadTooLargeError),
        (429, "reach_limit", "This request has reached api limit", RateLimitedError),
        (429, "resource_limited", "You have exceeded the limit", QuotaExhaustedError),
        (500, "", "", ServerError),
        (503, "", "", ServerError),
        (418, "", "", APIError),
    ],
)
def test_status_and_error_fields_choose_the_class(status, error, description, expected):
    assert api_error_class(status, error, description) is expected


def test_validation_errors_are_outside_the_api_branch():
    assert not issubclass(ValidationError, APIError)
    assert issubclass(ValidationError, AgoraChatError)
    assert issubclass(ValidationError, ValueError)


def test_api_error_message_says_what_and_what_to_do():
    error = AuthenticationError(
        status_code=401,
        error="auth_bad_access_token",
        description="Unable to authenticate due to corrupt access token",
        method="POST",
        path="/messages/users",
    )
    text = str(error)
    assert "HTTP 401 for POST /messages/users" in text
    assert "auth_bad_access_token" in text
    assert "Check the org/app names and the credentials" in text


def test_rate_limited_error_carries_retry_after():
    error = RateLimitedError(status_code=429, error="reach_limit", retry_after=2.5)
    assert error.retry_after == 2.5
    assert "Retry after 2.5 s" in str(error)


@pytest.mark.parametrize(
    "text",
    [
        "Authorization: Bearer YWMtabcdefghijklmnopqrstuvwxyz",
        "token 007eJxTYNDNaz3snC8huEfHWdz6s98qltq4zqy9fl99Uh0FDvy6F6DAYGlu4",
        "https://oss/x?Expires=1&OSSAccessKeyId=KEYKEYKEY&Signature=SIGSIGSIG",
        '{"share-secret": "X9dIOla-EemnXXXXtUZLGyqG9Y"}',
        '{"access_token":"YWMtXXXXXXXXXXXXXXXX","expires_in":5184000}',
        "grant_type=client_credentials&client_secret=SIGSIGSIG",
    ],
)
def test_redaction_removes_credentials(text):
    cleaned = redact(text)
    for secret in (
        "YWMtabcdefghijklmnopqrstuvwxyz",
        "007eJxTYNDNaz3snC8",
        "KEYKEYKEY",
        "SIGSIGSIG",
        "X9dIOla",
        "YWMtXXXXXXXXXXXXXXXX",
    ):
        assert secret not in cleaned
    assert "[redacted]" in cleaned


@pytest.mark.parametrize(
    "text",
    [
        # The service's codes end in key names; the description after them is no secret.
        "auth_bad_access_token: Unable to authenticate due to expired access token",
        "invalid_client_secret: The client secret is wrong",
        "access token expired; request a new token",
    ],
)
def test_redaction_keeps_the_services_descriptions(text):
    assert redact(text) == text


def test_excerpt_is_short_and_single_line():
    text = excerpt("line one\nline two " + "x" * 1000)
    assert "\n" not in text
    assert len(text) <= 301


def test_the_tree_drawn_in_the_module_docstring_is_the_class_tree():
    """Every exception class appears in the drawing, under its real parent."""
    import inspect

    import agora_chat_async._exceptions as module

    drawn: dict[str, str] = {}  # class name: parent name, as drawn
    stack: list[tuple[int, str]] = []
    for line in (module.__doc__ or "").splitlines():
        match = re.match(r"^\s*(?:[│ ]*[├└]── )?([A-Z]\w+Error)\b", line)
        if match is None or "Error" not in line.split()[0] + line:
            continue
        name = match.group(1)
        depth = line.index(name)
        while stack and stack[-1][0] >= depth:
            stack.pop()
        drawn[name] = stack[-1][1] if stack else ""
        stack.append((depth, name))
    classes = {
        name: cls
        for name, cls in vars(module).items()
        if inspect.isclass(cls) and issubclass(cls, module.AgoraChatError)
    }
    assert set(drawn) == set(classes)
    for name, parent in drawn.items():
        bases = [
            b.__name__ for b in classes[name].__bases__ if issubclass(b, module.AgoraChatError)
        ]
        assert bases == ([parent] if parent else []), name
