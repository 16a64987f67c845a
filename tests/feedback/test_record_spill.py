"""Spill files: what a crash can leave behind is read back, and a torn last line is skipped."""

from __future__ import annotations

from feedback.spill import SpillDir


def test_spill_round_trip_and_torn_line(tmp_path, make_interaction):
    spill = SpillDir(tmp_path / "spill")
    rows = [make_interaction(metadata={"k": "é"}, response_text="\ud800 lone") for _ in range(5)]
    spill.append(rows[:3])
    spill.append(rows[3:])
    assert spill.claim(spill.waiting()[0]) is None  # still this writer's open file
    spill.seal()
    (path,) = spill.waiting()
    with open(path, "a", encoding="utf-8") as handle:
        handle.write('{"id": "chatcmpl-torn", "tenant')  # a crash in the middle of a write
    replay = spill.claim(path)
    assert replay is not None
    assert SpillDir(tmp_path / "spill").claim(path) is None  # claimed: no one else replays it meanwhile
    chunks = list(replay.chunks(2))
    assert [len(c) for c in chunks] == [2, 2, 1]
    assert [i.to_json() for c in chunks for i in c] == [i.to_json() for i in rows]
    assert replay.corrupt_lines == 1
    replay.done()
    assert spill.waiting() == []
