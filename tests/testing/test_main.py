"""``python -m agora_chat_async.testing``: its options."""

from __future__ import annotations

import pytest

from agora_chat_async.testing import Faults
from agora_chat_async.testing.__main__ import _faults, main


def test_faults_are_parsed_as_faults_fields():
    assert _faults("") is None
    assert _faults("refuse_503=0.05, drop_connection=0.01,latency=0.2") == Faults(
        refuse_503=0.05, drop_connection=0.01, latency=0.2
    )


@pytest.mark.parametrize("bad", ["refuse_503", "nonsense=1", "refuse_503=2", "latency=x"])
def test_bad_faults_are_a_usage_error(bad, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--faults", bad])
    assert exit_info.value.code == 2
    assert "--faults" in capsys.readouterr().err


def test_the_server_says_where_it_is_and_how_to_reach_it(monkeypatch, capsys):
    import uvicorn

    served = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: served.update(options))
    argv = ["--port", "8123", "--org", "o1", "--app", "a1", "--client", "cid:csecret"]
    assert main([*argv, "--round-trip", "0.1"]) == 0
    out = capsys.readouterr().out
    assert served == {"host": "127.0.0.1", "port": 8123, "log_level": "warning"}
    assert "Agora Chat emulator at http://127.0.0.1:8123" in out
    assert "org 'o1', app 'a1'; quotas: 100% of the documented ones, counted sliding" in out
    assert "tokens: test-token" in out
    assert "client credentials: cid:csecret" in out
    assert "0.1 s round trip" in out
    assert (
        "export AGORA_CHAT_BASE_URL=http://127.0.0.1:8123 AGORA_CHAT_ORG=o1 "
        "AGORA_CHAT_APP=a1 AGORA_CHAT_TOKEN=test-token"
    ) in out
