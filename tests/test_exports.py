"""The public surface: what `agora_chat_async` exports, and from where it says it comes."""

import inspect

import agora_chat_async


def test_all_is_unique_and_complete():
    exported = agora_chat_async.__all__
    assert len(exported) == len(set(exported))
    public = {
        name
        for name in dir(agora_chat_async)
        if not name.startswith("_") and not inspect.ismodule(getattr(agora_chat_async, name))
    }
    assert public == set(exported) - {"__version__"}


def test_public_classes_report_the_public_module():
    for name in agora_chat_async.__all__:
        obj = getattr(agora_chat_async, name)
        if inspect.isclass(obj):
            assert obj.__module__ == "agora_chat_async", name


def test_every_public_callable_has_a_docstring():
    for name in agora_chat_async.__all__:
        obj = getattr(agora_chat_async, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert inspect.getdoc(obj), name
            for attr, member in vars(obj).items() if inspect.isclass(obj) else ():
                if not attr.startswith("_") and inspect.isfunction(member):
                    assert inspect.getdoc(member), f"{name}.{attr}"


def test_errors_form_one_tree():
    errors = [
        getattr(agora_chat_async, name)
        for name in agora_chat_async.__all__
        if name.endswith("Error")
    ]
    assert errors
    for error in errors:
        assert issubclass(error, agora_chat_async.AgoraChatError)


def test_importing_the_package_does_not_load_optional_modules():
    import subprocess
    import sys

    code = (
        "import sys, agora_chat_async; "
        "loaded = [m for m in ('agora_chat_async.testing', 'agora_chat_async.cli', "
        "'agora_chat_async.otel', 'opentelemetry', 'uvicorn', 'redis') if m in sys.modules]; "
        "print(loaded); sys.exit(1 if loaded else 0)"
    )
    run = subprocess.run(  # noqa: S603 - our own interpreter, a fixed script
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_testing_exports_report_their_public_module():
    from agora_chat_async import testing

    for name in testing.__all__:
        obj = getattr(testing, name)
        if inspect.isclass(obj):
            assert obj.__module__ == "agora_chat_async.testing", name
            assert inspect.getdoc(obj), name


def test_py_typed_marker_is_shipped():
    from importlib.resources import files

    assert files("agora_chat_async").joinpath("py.typed").is_file()


def test_the_pytest_plugin_and_the_command_are_registered():
    from importlib.metadata import entry_points

    plugins = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert plugins["agora_chat_async"] == "agora_chat_async.testing._plugin"
    scripts = {ep.name: ep.value for ep in entry_points(group="console_scripts")}
    assert scripts["agora-chat"] == "agora_chat_async.cli:main"


def test_the_public_surface_is_pinned():
    """Every public name, listed: a name added, renamed or removed fails here first, and
    goes in the CHANGELOG (issue 22 made ``free_port`` and ``round_trips`` private; issue
    23 added the broadcasts, edits, batch recalls and their errors)."""
    from agora_chat_async import testing

    assert sorted(agora_chat_async.__all__) == [
        "APIError",
        "AgoraAppToken",
        "AgoraChatClient",
        "AgoraChatError",
        "AudioBody",
        "Auth",
        "AuthenticationError",
        "BadRequestError",
        "BatchRecallResult",
        "BatchSplit",
        "Body",
        "Broadcast",
        "BroadcastKind",
        "BroadcastLimits",
        "ChatType",
        "Claim",
        "ClientClosedError",
        "ClientCredentials",
        "Clock",
        "CmdBody",
        "ConflictError",
        "ConnectError",
        "CustomBody",
        "DEFAULT_RATE_LIMITS",
        "DEFAULT_RETRY_POLICY",
        "DEFAULT_TIMEOUT",
        "DailyLimit",
        "DurableFanOut",
        "EditLimitError",
        "EditableType",
        "Event",
        "EventHook",
        "FanOut",
        "FeatureNotEnabledError",
        "FileBody",
        "FileProgressStore",
        "ForbiddenError",
        "HistoryFile",
        "HistoryRecord",
        "HistoryStream",
        "ImageBody",
        "ImageSize",
        "ImportedMessage",
        "InFlight",
        "JobLeaseError",
        "JobProgress",
        "LimitName",
        "LimitReachedError",
        "Limiter",
        "LimiterStoreError",
        "LimiterUnavailableError",
        "LimiterWait",
        "LocationBody",
        "MAX_UPLOAD_BYTES",
        "MessageOptions",
        "NotFoundError",
        "OfflineStatus",
        "OutcomeUnknownError",
        "PayloadTooLargeError",
        "Permit",
        "Priority",
        "ProgressStore",
        "QuotaExhaustedError",
        "Rate",
        "RateLimited",
        "RateLimitedError",
        "RateLimits",
        "Recall",
        "RecallResult",
        "RecipientsSettled",
        "RedisLimiter",
        "RedisProgressStore",
        "RequestSent",
        "RetryPolicy",
        "Retrying",
        "RoomMessageLevel",
        "SendFailedError",
        "SendResult",
        "ServerError",
        "ServerTiming",
        "SlidingWindowLimiter",
        "StaticToken",
        "SystemClock",
        "TextBody",
        "TransportError",
        "UnexpectedResponseError",
        "UnknownBody",
        "UploadedFile",
        "ValidationError",
        "VideoBody",
        "__version__",
        "pooled_transport",
    ]
    assert sorted(testing.__all__) == [
        "BroadcastRecord",
        "CALL_RATE_REFUSAL",
        "Delivery",
        "ENDPOINTS",
        "Edit",
        "Emulator",
        "EmulatorServer",
        "Faults",
        "Imported",
        "MockClock",
        "Network",
        "PLAN_REFUSAL",
        "Policy",
        "QUOTA_REFUSAL",
        "RedisServer",
        "Refusal",
        "RoamingDeletion",
        "ScaledClock",
    ]
    assert not hasattr(agora_chat_async.RedisLimiter, "round_trips")
    assert hasattr(agora_chat_async.Limiter, "clock")
    assert hasattr(agora_chat_async.Limiter, "effective_limit")
