"""The agora-chat command: the demo prints its summary."""

import pytest

from agora_chat_async._cli import main


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

    from agora_chat_async.testing import free_port

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
