"""The sandbox's journal: what a crash mid-write leaves behind is skipped, and a batch (a
charge with the answer stored under its key) comes back whole or not at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from providers.sandbox.journal import Journal


def test_a_batch_replays_whole_and_a_torn_last_line_is_skipped(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.jsonl")
    journal.append("charge", {"id": "ch_1"})
    with journal.batch():
        journal.append("charge", {"id": "ch_2"})
        journal.append("key", {"id": "charge:k2"})
    journal.close()
    with (tmp_path / "journal.jsonl").open("a") as file:
        file.write('{"t":"batch","v":[{"t":"charge","v":{"id":"ch_3"}},{"t":"key","v":{"id":"cha')
    restarted = Journal(tmp_path / "journal.jsonl")
    replayed = [(kind, value["id"]) for kind, value in restarted.replay()]
    assert replayed == [("charge", "ch_1"), ("charge", "ch_2"), ("key", "charge:k2")]
    restarted.append("charge", {"id": "ch_4"})  # after the restart, past the torn line
    restarted.close()
    assert [value["id"] for _, value in Journal(tmp_path / "journal.jsonl").replay()][-1] == "ch_4"


def test_journal_batches_do_not_nest(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.jsonl")
    with journal.batch(), pytest.raises(RuntimeError), journal.batch():
        pass
