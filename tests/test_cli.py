"""The agora-chat command: the demo prints its summary."""

import pytest

from agora_chat_async.cli import main


class Killed(BaseException):
    """The process is killed: nothing after this runs. Not ``KeyboardInterrupt``, which
    asyncio treats apart when a task raises it (the loop stops before the task's done
    callbacks run, so anyio's idle worker threads outlive the test); a real Ctrl-C
    cancels the main task instead."""


def test_demo_prints_a_summary(capsys):
    status = main(
        ["demo", "--users", "1500", "--groups", "9", "--rooms", "30", "--time-scale", "600"]
    )
    out = capsys.readouterr().out
    assert "agora-chat demo: summary" in out
    assert "1,500" in out
    assert status in (0, 1)  # 1 when a recipient failed; the table says which


def test_demo_refuses_nonsense(capsys):
    assert main(["demo", "--users", "-1"]) == 2
    assert "must be" in capsys.readouterr().err


def test_a_command_is_required():
    with pytest.raises(SystemExit):
        main([])


def test_emulator_module_help():
    from agora_chat_async.testing.__main__ import main as serve

    with pytest.raises(SystemExit) as caught:
        serve(["--help"])
    assert caught.value.code == 0


def test_python_m_testing_serves_until_stopped():
    """`python -m agora_chat_async.testing --port N` answers on 127.0.0.1 and stops on SIGTERM."""
    import subprocess
    import sys
    import time

    import httpx

    from agora_chat_async.testing._server import free_port

    port = free_port()
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [
            sys.executable,
            "-m",
            "agora_chat_async.testing",
            "--port",
            str(port),
            "--time-scale",
            "60",
            "--client",
            "cid:secret",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                stats = httpx.get(f"http://127.0.0.1:{port}/_emulator/stats", timeout=1).json()
                break
            except httpx.TransportError:
                assert process.poll() is None, "the emulator exited"
                assert time.monotonic() < deadline, "the emulator did not start"
                time.sleep(0.1)
        assert stats["limits"]["users"] == [6000, 60]
    finally:
        process.terminate()
        process.wait(timeout=10)


# -- commands against the emulator on a socket ----------------------------------------------------

import json as _json  # noqa: E402
from pathlib import Path  # noqa: E402

from agora_chat_async import FileProgressStore  # noqa: E402
from agora_chat_async.testing import Emulator, EmulatorServer  # noqa: E402


@pytest.fixture
def served():
    emulator = Emulator(clients={"cli-id": "cli-secret-0123456789"})
    with EmulatorServer(emulator) as server:
        env = {
            "AGORA_CHAT_BASE_URL": server.url,
            "AGORA_CHAT_ORG": "test-org",
            "AGORA_CHAT_APP": "test-app",
            "AGORA_CHAT_CLIENT_ID": "cli-id",
            "AGORA_CHAT_CLIENT_SECRET": "cli-secret-0123456789",
        }
        yield emulator, env


def test_send_from_arguments_writes_results_and_exits_zero(served, tmp_path, capsys):
    emulator, env = served
    results = tmp_path / "results.jsonl"
    status = main(
        [
            "send",
            "users",
            "alice",
            "bob",
            "--text",
            "hi",
            "--results",
            str(results),
            "--no-progress",
        ],
        env=env,
    )
    assert status == 0
    assert "2 delivered, 0 failed, 0 unknown" in capsys.readouterr().out
    lines = [_json.loads(line) for line in results.read_text().splitlines()]
    assert {line["recipient"] for line in lines} == {"alice", "bob"}
    assert all(line["status"] == "delivered" for line in lines)
    assert {d.recipient for d in emulator.deliveries} == {"alice", "bob"}


def test_send_reads_stdin_and_a_json_body(served, tmp_path, monkeypatch, capsys):
    emulator, env = served
    body = tmp_path / "body.json"
    body.write_text(_json.dumps({"type": "custom", "customEvent": "promo"}))
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("g1\ng2\ng3\n"))
    assert main(["send", "groups", "--body", str(body)], env=env) == 0  # with its progress bar
    assert [d.recipient for d in emulator.deliveries] == ["g1", "g2", "g3"]
    assert "3 delivered" in capsys.readouterr().out


@pytest.mark.parametrize("resumable", [True, False])
def test_send_screens_its_input_as_the_library_does(
    served, tmp_path, monkeypatch, capsys, resumable
):
    emulator, env = served
    ids = [f"user-{index:04d}" for index in range(2000)]
    ids[1000] = ""  # a blank line
    ids.insert(1500, "user-0007")  # and a duplicate
    source = tmp_path / "ids.txt"
    source.write_text("\n".join(ids) + "\n")
    argv = ["send", "users", "--text", "hi", "--no-progress", "--rate-limits", "users=60000/60"]
    if resumable:
        argv += ["--file", str(source)]
    else:
        monkeypatch.setattr("sys.stdin", __import__("io").StringIO(source.read_text()))
    assert main(argv, env=env) == 1
    out = capsys.readouterr().out
    assert "1999 delivered, 1 failed, 0 unknown, 1 duplicates (each id sent once)" in out
    assert "to[1000]" not in out.split("\n")[0]
    assert "1 x ValidationError: must be a non-empty string, got ''" in out
    assert len(emulator.deliveries) == 1999


@pytest.mark.parametrize(
    ("change", "reason", "hint"),
    [
        # Credentials are exchanged first: the token request is the one an unknown org fails.
        ({"AGORA_CHAT_ORG": "no-such-org"}, "AuthenticationError", "check --org, --app"),
        (
            {"AGORA_CHAT_CLIENT_SECRET": "wrong-secret-0123456789"},
            "AuthenticationError",
            "check --client-id and --client-secret",
        ),
    ],
)
def test_the_summary_names_why_recipients_were_not_delivered(served, capsys, change, reason, hint):
    _, env = served
    assert (
        main(
            ["send", "users", "ann", "bob", "--text", "hi", "--no-progress"], env={**env, **change}
        )
        == 1
    )
    out = capsys.readouterr().out
    assert "not delivered, by reason:" in out
    assert f"2 x {reason}: HTTP" in out
    assert "('ann', 'bob')" in out
    assert f"hint: {hint}" in out or hint in out.split("hint: ", 1)[1]
    assert "wrong-secret" not in out


def test_the_summary_names_an_expired_token(served, capsys):
    emulator, env = served
    token = "YWMt-expired-token-for-the-test"
    emulator._issued[token] = -1.0  # issued by POST /token, expired before the send
    env = {k: v for k, v in env.items() if "CLIENT" not in k} | {"AGORA_CHAT_TOKEN": token}
    assert main(["send", "users", "ann", "--text", "hi", "--no-progress"], env=env) == 1
    out = capsys.readouterr().out
    assert "Unable to authenticate due to expired access token" in out
    assert "hint: the token has expired" in out
    assert token not in out


def test_send_exits_one_when_a_recipient_is_not_delivered(served, capsys):
    _, env = served
    bad = {**env, "AGORA_CHAT_CLIENT_SECRET": "wrong-secret-0123456789"}
    assert main(["send", "users", "alice", "--text", "hi", "--no-progress"], env=bad) == 1
    captured = capsys.readouterr()
    assert "0 delivered, 1 failed" in captured.out
    assert "wrong-secret" not in captured.out + captured.err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["send", "users", "a", "--text", "x"], "missing --base-url or AGORA_CHAT_BASE_URL"),
        (["send", "users", "a", "--body", "/nonexistent.json"], "cannot read the body file"),
        (["send", "users", "--file", "/nonexistent.txt", "--text", "x"], "cannot read"),
        (["import", "users", "/nonexistent.jsonl"], "cannot read the messages file"),
    ],
)
def test_user_mistakes_are_one_line_and_status_two(argv, message, capsys):
    env = (
        {}
        if "missing" in message
        else {
            "AGORA_CHAT_BASE_URL": "http://127.0.0.1:9",
            "AGORA_CHAT_ORG": "o",
            "AGORA_CHAT_APP": "a",
            "AGORA_CHAT_TOKEN": "YWMt-token-0123456789",
        }
    )
    assert main([*argv, "--no-progress"], env=env) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1
    assert "Traceback" not in err


def test_missing_credentials_and_unknown_body_types_are_named(served, tmp_path, capsys):
    _, env = served
    no_auth = {k: v for k, v in env.items() if "CLIENT" not in k}
    assert main(["send", "users", "a", "--text", "x"], env=no_auth) == 2
    assert "missing credentials" in capsys.readouterr().err
    body = tmp_path / "body.json"
    body.write_text('{"type": "hologram", "msg": "x"}')
    assert main(["send", "users", "a", "--body", str(body)], env=env) == 2
    assert "unknown body type 'hologram'" in capsys.readouterr().err


def messages_file(tmp_path: Path, count: int, *, bad_line: int | None = None) -> Path:
    path = tmp_path / "messages.jsonl"
    lines = []
    for index in range(count):
        if index == bad_line:
            lines.append('{"from": "a", "target": ')
            continue
        lines.append(
            _json.dumps(
                {
                    "from": f"sender-{index}",
                    "target": f"target-{index}",
                    "type": "txt",
                    "body": {"msg": f"message {index}"},
                    "msg_timestamp": 1700000000000 + index,
                }
            )
        )
    path.write_text("\n".join(lines) + "\n")
    return path


def imported_lines(emulator: Emulator) -> list[int]:
    return sorted(int(i.sender.split("-")[1]) for i in emulator.imports)


def test_import_reports_a_malformed_line_with_its_number_before_sending(served, tmp_path, capsys):
    emulator, env = served
    path = messages_file(tmp_path, 10, bad_line=6)
    assert main(["import", "users", str(path), "--no-progress"], env=env) == 2
    assert f"{path}:7: not JSON" in capsys.readouterr().err
    assert emulator.imports == []


@pytest.mark.parametrize("stop_after", [0, 3, 11])
@pytest.mark.parametrize("where", ["before the request", "after the answer"])
def test_an_import_stopped_anywhere_resumes_exactly_once(
    served, tmp_path, monkeypatch, capsys, stop_after, where
):
    """The process dies at line `stop_after`: before its request left, or after the
    service imported it but before the checkpoint said so. The rerun imports every other
    line exactly once, and names the one line that was in flight."""
    emulator, env = served
    path = messages_file(tmp_path, 20)
    # Saves: the first, then two a line (in flight, then its outcome), one line at a time.
    die_at = 1 + 2 * stop_after + (0 if where == "before the request" else 1)
    calls = {"n": 0}
    original = FileProgressStore.save

    async def dying(self, job, progress):
        if calls["n"] == die_at:
            if where == "before the request":
                await original(self, job, progress)  # recorded in flight, then died
            # "after the answer": imported, then died before recording it done
            raise Killed  # a kill: nothing after this runs
        calls["n"] += 1
        await original(self, job, progress)

    monkeypatch.setattr(FileProgressStore, "save", dying)
    argv = ["import", "users", str(path), "--concurrency", "1", "--no-progress"]
    with pytest.raises(Killed):  # alone, never in an exception group
        main(argv, env=env)
    monkeypatch.undo()
    capsys.readouterr()

    assert main(argv, env=env) == 1  # one line is unknown
    err = capsys.readouterr().err
    assert f"lines {stop_after + 1} were being imported" in err
    imported = imported_lines(emulator)
    assert len(imported) == len(set(imported)), "no line imported twice"
    expected = set(range(20))
    if where == "before the request":
        expected -= {stop_after}  # it never left: not imported, and reported unknown
    assert set(imported) == expected

    # The operator checks the service, and resends the unknown line if it is missing.
    if where == "before the request":
        assert main([*argv, "--resend-unknown"], env=env) == 0
        assert imported_lines(emulator) == list(range(20))


def test_an_import_run_twice_imports_nothing_the_second_time(served, tmp_path, capsys):
    emulator, env = served
    path = messages_file(tmp_path, 12)
    argv = ["import", "groups", str(path), "--no-progress"]
    assert main(argv, env=env) == 0
    assert main(argv, env=env) == 0
    assert "0 imported" in capsys.readouterr().out
    assert len(emulator.imports) == 12


def test_a_checkpoint_is_never_applied_to_another_file(served, tmp_path, capsys):
    _, env = served
    path = messages_file(tmp_path, 3)
    checkpoint = tmp_path / "progress"
    assert (
        main(
            ["import", "users", str(path), "--checkpoint", str(checkpoint), "--no-progress"],
            env=env,
        )
        == 0
    )
    path.write_text(path.read_text() + path.read_text())
    assert main(["import", "users", str(path), "--checkpoint", str(checkpoint)], env=env) == 2
    assert "records another input file" in capsys.readouterr().err


def test_a_checkpoint_knows_its_whole_input_not_only_its_first_64_kb(served, tmp_path, capsys):
    """The checkpoint fingerprinted the size and the first 64 KB: a file changed further on,
    at the same size, was taken for the same input."""
    emulator, env = served
    path = messages_file(tmp_path, 1000)
    assert path.stat().st_size > 64 * 1024
    argv = ["import", "users", str(path), "--no-progress"]
    assert main(argv, env=env) == 0
    text = path.read_text()
    path.write_text(text.replace("message 999", "message 998"))  # the last line, same size
    assert main(argv, env=env) == 2
    assert "records another input file" in capsys.readouterr().err
    assert len(emulator.imports) == 1000


def test_upload_download_recall_history_and_delete(served, tmp_path, capsys):
    emulator, env = served
    source = tmp_path / "photo.jpg"
    source.write_bytes(b"\xff\xd8 not really a jpeg")
    assert main(["upload", str(source), "--restrict"], env=env) == 0
    uploaded = _json.loads(capsys.readouterr().out)
    target = tmp_path / "copy.jpg"
    # The "=" form: a share-secret may begin with "-" (urlsafe base64), which argparse would
    # otherwise read as an option (a flaky failure when the emulator's secret did).
    secret = uploaded["share_secret"]
    argv = ["download", uploaded["uuid"], str(target), f"--share-secret={secret}"]
    assert main(argv, env=env) == 0
    assert target.read_bytes() == source.read_bytes()
    assert (
        main(
            [
                "send",
                "users",
                "bob",
                "--text",
                "oops",
                "--results",
                str(tmp_path / "r"),
                "--no-progress",
            ],
            env=env,
        )
        == 0
    )
    message_id = _json.loads((tmp_path / "r").read_text())["message_id"]
    capsys.readouterr()
    assert main(["recall", message_id, "bob", "chat"], env=env) == 0
    assert f"recalled {message_id}" in capsys.readouterr().out
    assert main(["delete-conversation", "alice", "bob", "chat"], env=env) == 0
    from datetime import UTC, datetime

    hour = datetime.fromtimestamp(emulator.wall_time(), tz=UTC).strftime("%Y%m%d%H")
    out = tmp_path / "history.jsonl"
    assert main(["history", hour, "--output", str(out)], env=env) == 0
    records = [_json.loads(line) for line in out.read_text().splitlines()]
    assert any(record["to"] == "bob" for record in records)
    assert main(["history", hour, "--table"], env=env) == 0
    assert "history" in capsys.readouterr().out


def test_rate_limits_parse_any_subset_and_keep_the_rest():
    from agora_chat_async import Rate, RateLimits
    from agora_chat_async.cli._settings import CliError, parse_rate_limits

    limits = parse_rate_limits("users=6000/6, groups=40/1")
    assert limits == RateLimits(users=Rate(6000, per=6), groups=Rate(40, per=1))
    assert limits.rooms == RateLimits().rooms
    for text in ("users=6000", "users=x/60", "people=1/1", "users=1/1,users=2/1", "users=0/60"):
        with pytest.raises(CliError, match="is not NAME=LIMIT/SECONDS"):
            parse_rate_limits(text)


@pytest.mark.parametrize(
    ("flag", "variable", "value"),
    [
        ("--rate-limits", "AGORA_CHAT_RATE_LIMITS", "users=lots"),
        ("--redis-url", None, "http://x"),
        ("--cold-start-wait", "AGORA_CHAT_COLD_START_WAIT", "maybe"),
    ],
)
def test_a_malformed_quota_or_redis_url_is_one_line_and_status_two(
    served, capsys, flag, variable, value
):
    _, env = served
    argv = ["send", "users", "alice", "--text", "hi", "--no-progress"]
    assert main([*argv, flag, value], env=env) == 2
    if variable is not None:
        assert main(argv, env={**env, variable: value}) == 2
    err = capsys.readouterr().err
    assert all(line.startswith("agora-chat send: ") for line in err.splitlines())
    assert flag in err


def test_send_takes_the_app_s_quota_and_shares_it_through_redis(
    served, capsys, redis_server, caplog
):
    import logging

    import redis as redis_sync

    emulator, env = served
    env = {
        **env,
        "AGORA_CHAT_RATE_LIMITS": "users=6000/6",
        "AGORA_CHAT_REDIS_URL": redis_server.url,
        "AGORA_CHAT_COLD_START_WAIT": "off",  # a fresh Redis: nothing sent in the last window
    }
    argv = ["send", "users", "alice", "bob", "--text", "hi", "--no-progress"]
    with caplog.at_level(logging.WARNING, logger="agora_chat_async"):
        assert main(argv, env=env) == 0
    assert "cold_start_wait=False, so sending at once" in caplog.text
    assert {d.recipient for d in emulator.deliveries} == {"alice", "bob"}
    store = redis_sync.Redis.from_url(redis_server.url)
    try:
        keys = [key.decode() for key in store.keys("*")]
    finally:
        store.close()
    assert any(key.startswith("agora-chat:{test-org#test-app}:users") for key in keys)
    assert "2 delivered" in capsys.readouterr().out


def test_a_send_from_a_file_killed_anywhere_resumes_with_the_same_command(
    served, tmp_path, monkeypatch, capsys
):
    """The process dies at its fourth checkpoint write (the second request recorded in
    flight, never sent); the same command again sends the rest, names the request's
    recipients unknown, and leaves one final results line per recipient."""
    from agora_chat_async import FileProgressStore

    emulator, env = served
    env = {**env, "AGORA_CHAT_RATE_LIMITS": "users=7/1"}  # seven a request
    ids = tmp_path / "ids.txt"
    users = [f"user-{index:02d}" for index in range(30)]
    ids.write_text("".join(f"{user}\n" for user in users))
    results = tmp_path / "results.jsonl"
    argv = ["send", "users", "--file", str(ids), "--text", "hi", "--results", str(results)]
    argv += ["--no-progress"]
    original, calls = FileProgressStore.save, {"n": 0}

    async def dying(self, job, progress):
        calls["n"] += 1
        await original(self, job, progress)
        if calls["n"] == 4:  # the first request done, the second recorded in flight
            raise Killed

    monkeypatch.setattr(FileProgressStore, "save", dying)
    with pytest.raises(Killed):  # alone, never in an exception group
        main(argv, env=env)
    monkeypatch.undo()
    capsys.readouterr()
    assert main(argv, env=env) == 1  # seven recipients are unknown
    captured = capsys.readouterr()
    assert "7 recipients were being sent to when an earlier run stopped" in captured.err
    assert "23 delivered (7 in earlier runs), 0 failed, 7 unknown" in captured.out
    delivered = [d.recipient for d in emulator.deliveries]
    assert len(delivered) == len(set(delivered)) == 23  # nobody twice
    lines = [_json.loads(line) for line in results.read_text().splitlines()]
    assert sorted(line["recipient"] for line in lines) == users  # one final line each
    unknown = {line["recipient"] for line in lines if line["status"] == "unknown"}
    assert unknown == set(users[7:14]) == set(users) - set(delivered)
    # Checked by hand: they did not get it. Send them, and only them.
    assert main([*argv, "--resend-unknown"], env=env) == 0
    assert "30 delivered (23 in earlier runs)" in capsys.readouterr().out
    assert sorted(d.recipient for d in emulator.deliveries) == users
    lines = [_json.loads(line) for line in results.read_text().splitlines()]
    assert len(lines) == 30
    assert {line["status"] for line in lines} == {"delivered"}
    # Done: the same command again sends nothing.
    assert main(argv, env=env) == 0
    assert len(emulator.deliveries) == 30


def test_a_checkpoint_of_another_message_is_refused(served, tmp_path, capsys):
    _, env = served
    ids = tmp_path / "ids.txt"
    ids.write_text("a\nb\n")
    assert (
        main(["send", "users", "--file", str(ids), "--text", "one", "--no-progress"], env=env) == 0
    )
    assert (
        main(["send", "users", "--file", str(ids), "--text", "two", "--no-progress"], env=env) == 2
    )
    err = capsys.readouterr().err
    assert "records a send of this file with another message" in err
    assert "give it its own --checkpoint FILE" in err
    assert main(["send", "users", "a", "--text", "x", "--resend-unknown"], env=env) == 2


def test_the_progress_rate_and_time_left_count_this_runs_answers_only():
    import io

    from rich.console import Console

    from agora_chat_async.cli._progress import progress_bars

    now = [0.0]
    console = Console(file=io.StringIO(), width=160)
    with progress_bars(console=console, outcomes=True, clock=lambda: now[0]) as bars:
        show = bars.add("users", 5000, completed=4000)  # done by an earlier run
        for second in (1, 2, 3):
            now[0] = float(second)
            show(4000 + 100 * second, failed=second, unknown=1)
        (task,) = bars._progress.tasks
        assert task.completed == 4300
        assert task.speed == pytest.approx(100.0)  # not 4,300 in 3 s
        assert task.time_remaining == pytest.approx(7.0)
        assert (task.fields["failed"], task.fields["unknown"]) == (3, 1)


def test_the_progress_of_a_send_counts_every_recipient_answered(
    served, tmp_path, capsys, monkeypatch
):
    emulator, env = served
    monkeypatch.setenv("COLUMNS", "200")  # rich's width off a terminal
    ids = tmp_path / "ids.txt"
    ids.write_text("".join(f"u{i}\n" for i in range(700)) + "\nu3\n")  # a blank, a duplicate
    assert main(["send", "users", "--file", str(ids), "--text", "hi"], env=env) == 1
    captured = capsys.readouterr()
    # The bar ends full (the duplicate and the blank line are answered too), the one failed
    # apart; the summary says the same.
    assert "702/702" in captured.err
    assert "failed 1  unknown 0" in captured.err
    assert "700 delivered, 1 failed, 0 unknown, 1 duplicates" in captured.out
    assert len(emulator.deliveries) == 700


def test_broadcast_and_edit(served, tmp_path, capsys):
    emulator, env = served
    assert main(["broadcast", "users", "--text", "hello all", "--ext", '{"k": "v"}'], env=env) == 0
    line = _json.loads(capsys.readouterr().out)
    assert line == {"to": "users", "broadcast_id": emulator.broadcasts[0].id}
    assert emulator.broadcasts[0].msg == {"msg": "hello all"}
    # The second within the half hour: a new process without --redis-url knows nothing of
    # the first, so the service refuses it (with --redis-url, the next test: at once).
    assert main(["broadcast", "users", "--text", "again"], env=env) == 1
    assert "This request has reached api limit" in capsys.readouterr().err
    assert len(emulator.broadcasts) == 1
    assert main(["broadcast", "users", "--text", "x", "--level", "high"], env=env) == 2
    assert "applies to broadcasts to chat rooms only" in capsys.readouterr().err
    results = tmp_path / "r"
    argv = ["send", "users", "bob", "--text", "v1", "--results", str(results), "--no-progress"]
    assert main(argv, env=env) == 0
    message_id = _json.loads(results.read_text())["message_id"]
    assert main(["edit", message_id, "--text", "v2", "--editor", "bob"], env=env) == 0
    assert f"edited {message_id}" in capsys.readouterr().out
    assert main(["edit", message_id, "--type", "img", "--ext", '{"a": 1}'], env=env) == 1
    assert "not supported for modification" in capsys.readouterr().err
    assert main(["edit", message_id, "--text", "v3", "--custom-exts", "{}"], env=env) == 2
    assert [edit.new_msg for edit in emulator.edits[message_id]] == [{"type": "txt", "msg": "v2"}]


def test_broadcasts_through_redis_are_remembered_between_runs(served, redis_server, capsys):
    emulator, env = served
    env = {**env, "AGORA_CHAT_REDIS_URL": redis_server.url}
    assert main(["broadcast", "users", "--text", "one"], env=env) == 0
    capsys.readouterr()
    assert main(["broadcast", "users", "--text", "two"], env=env) == 1
    assert "no call is left now; nothing was sent" in capsys.readouterr().err
    assert len(emulator.broadcasts) == 1
    assert sum(emulator.refused.values()) == 0
