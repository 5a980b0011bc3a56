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
