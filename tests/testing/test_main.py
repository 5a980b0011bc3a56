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
