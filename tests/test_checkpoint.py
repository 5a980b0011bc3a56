"""The import checkpoint: what a restart sends again, and what it never does."""

from __future__ import annotations

import json

import pytest

from agora_chat_async import ValidationError
from agora_chat_async._checkpoint import Checkpoint


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(f'{{"n": {i}}}' for i in range(10)))
    return path


def reopen(checkpoint: Checkpoint, source) -> Checkpoint:
    return Checkpoint.open(checkpoint.path, source)


def test_done_lines_are_skipped_failed_ones_sent_again_in_flight_ones_uncertain(tmp_path, source):
    checkpoint = Checkpoint.open(tmp_path / "cp", source)
    for line in range(4):
        checkpoint.start(line)
    checkpoint.finish(0, ok=True)
    checkpoint.finish(1, ok=False)
    checkpoint.finish(3, ok=True)
    # The process dies here, with line 2 in flight.
    again = reopen(checkpoint, source)
    assert [line for line in range(10) if not again.finished(line)] == [1, *range(4, 10)]
    assert again.uncertain == {2}
    again.resend_uncertain()
    assert not again.finished(2)
    # Until line 2 starts, a crash still leaves it uncertain, never silently done.
    assert reopen(again, source).uncertain == {2}


def test_the_file_stays_small_as_lines_complete(tmp_path, source):
    checkpoint = Checkpoint.open(tmp_path / "cp", source)
    for line in range(10):
        checkpoint.start(line)
        checkpoint.finish(line, ok=True)
    data = json.loads(checkpoint.path.read_text())
    assert data["prefix"] == 10
    assert data["done"] == []
    assert not (tmp_path / "cp.tmp").exists()


def test_a_checkpoint_belongs_to_one_input(tmp_path, source):
    checkpoint = Checkpoint.open(tmp_path / "cp", source)
    checkpoint.start(0)
    source.write_text(source.read_text() + "\n{}")
    with pytest.raises(ValidationError, match="another input file"):
        reopen(checkpoint, source)
    (tmp_path / "cp").write_text("[1, 2]")
    with pytest.raises(ValidationError, match="not an agora-chat checkpoint"):
        reopen(checkpoint, source)
    (tmp_path / "cp").write_text("{")
    with pytest.raises(ValidationError, match="cannot read"):
        reopen(checkpoint, source)
