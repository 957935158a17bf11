"""The journal's line format and crash recovery: a torn tail is dropped, nothing before it; damage elsewhere stops."""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fieldcomms.errors import JournalCorrupt
from fieldcomms.store.journal import (
    JournalWriter,
    RecoveryReport,
    decode_line,
    encode_record,
    list_segments,
    read_segment,
    segment_name,
)

# Record bodies need variety in length and in bytes (multi-byte UTF-8, escapes, newlines inside strings),
# not deep nesting: the cut is what is under test.
body = st.text(max_size=40) | st.lists(st.integers(-(2**63), 2**63 - 1) | st.none() | st.booleans(), max_size=5)


@st.composite
def records(draw: st.DrawFn) -> list[dict[str, Any]]:
    n = draw(st.integers(0, 12))
    out = []
    for seq in range(1, n + 1):
        out.append({"seq": seq, "type": draw(st.sampled_from(["update", "event", "user"])),
                    "coll": draw(st.sampled_from(["updates", "events", "users"])),
                    "data": {"id": draw(st.text(min_size=1, max_size=10)), "seq": seq, "body": draw(body)}})
    return out


def write_segment(path: Path, recs: list[dict[str, Any]]) -> list[bytes]:
    lines = [encode_record(r) for r in recs]
    path.write_bytes(b"".join(lines))
    return lines


def no_fsync() -> Any:
    """What is under test in the properties is which bytes survive, not the disk flush (a few ms each,
    hundreds of times); the flush itself is exercised by the store and crash tests."""
    return mock.patch("os.fsync")


def read_all(path: Path, *, repair: bool = True) -> tuple[list[dict[str, Any]], RecoveryReport]:
    report = RecoveryReport()
    return list(read_segment(path, report, repair=repair)), report


def test_encode_decode_round_trip() -> None:
    record = {"seq": 7, "type": "update", "coll": "updates",
              "data": {"id": "upd_1", "text": "Snipers? No. \u2014 #libdempolicing \U0001f4f7", "n": [1, None, True]}}
    line = encode_record(record)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert line[8:9] == b" " and int(line[:8], 16) >= 0
    assert decode_line(line) == record


@pytest.mark.parametrize("mangle", [
    lambda line: b"%08x" % ((int(line[:8], 16) + 1) % 2**32) + line[8:],  # wrong checksum
    lambda line: line[:20] + bytes([line[20] ^ 0x01]) + line[21:],  # a flipped bit in the body
    lambda line: line[:-1],  # no newline: torn
    lambda line: line[:-5] + b"\n",  # shortened body
    lambda line: b"zzzzzzzz" + line[8:],  # not hex
    lambda line: line[:8] + b"-" + line[9:],  # no separator
    lambda line: b"\n",
    lambda line: b"",
])
def test_corrupt_lines_are_rejected(mangle: Any) -> None:
    line = encode_record({"seq": 1, "type": "update", "coll": "updates", "data": {"id": "a", "text": "hello"}})
    assert decode_line(mangle(line)) is None


@pytest.mark.parametrize("body", [b"[1,2]", b'"seq"', b'{"seq": "1"}', b'{"type": "x"}', b"{not json"])
def test_well_checksummed_non_records_are_rejected(body: bytes) -> None:
    import zlib

    assert decode_line(b"%08x " % zlib.crc32(body) + body + b"\n") is None


def test_segment_names_sort_by_first_seq(tmp_path: Path) -> None:
    for first in (1000, 1, 20):
        (tmp_path / segment_name(first)).write_bytes(b"")
    (tmp_path / "journal-notanumber.log").write_bytes(b"")
    (tmp_path / "snapshot.jsonl").write_bytes(b"")
    assert [first for first, _ in list_segments(tmp_path)] == [1, 20, 1000]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(recs=records(), cut_fraction=st.floats(0, 1))
def test_any_truncation_recovers_exactly_the_complete_lines(recs: list[dict[str, Any]], cut_fraction: float) -> None:
    with tempfile.TemporaryDirectory() as d, no_fsync():
        path = Path(d) / segment_name(1)
        lines = write_segment(path, recs)
        total = sum(map(len, lines))
        cut = round(cut_fraction * total)
        with open(path, "r+b") as f:
            f.truncate(cut)
        ends = []
        pos = 0
        for line in lines:
            pos += len(line)
            ends.append(pos)
        complete = [r for r, end in zip(recs, ends, strict=True) if end <= cut]
        good_bytes = max([e for e in ends if e <= cut], default=0)

        got, report = read_all(path)
        assert got == complete
        assert report.records == len(complete)
        assert report.dropped_bytes == cut - good_bytes
        assert path.stat().st_size == good_bytes  # the torn tail is gone from the file

        # The journal goes on from there: new records land after the good ones and read back.
        more = [{"seq": len(complete) + i + 1, "type": "update", "coll": "updates", "data": {"id": f"n{i}"}}
                for i in range(2)]
        with open(path, "ab") as f:
            f.write(b"".join(encode_record(r) for r in more))
        again, report = read_all(path)
        assert again == complete + more
        assert report.dropped_bytes == 0


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(recs=records(), garbage=st.binary(min_size=1, max_size=300))
def test_garbage_after_valid_lines_is_dropped(recs: list[dict[str, Any]], garbage: bytes) -> None:
    with tempfile.TemporaryDirectory() as d, no_fsync():
        path = Path(d) / segment_name(1)
        lines = write_segment(path, recs)
        good = sum(map(len, lines))
        with open(path, "ab") as f:
            f.write(garbage)
        got, report = read_all(path)
        assert got == recs
        assert report.dropped_bytes == len(garbage)
        assert path.stat().st_size == good


def test_read_without_repair_leaves_the_file(tmp_path: Path) -> None:
    path = tmp_path / segment_name(1)
    recs = [{"seq": i, "type": "t", "coll": "c", "data": {"id": str(i)}} for i in (1, 2, 3)]
    write_segment(path, recs)
    with open(path, "ab") as f:
        f.write(b"0000")
    size = path.stat().st_size
    got, report = read_all(path, repair=False)
    assert got == recs and report.dropped_bytes == 4
    assert path.stat().st_size == size


def test_a_corrupt_line_followed_by_valid_lines_stops_the_read_and_keeps_the_file(tmp_path: Path) -> None:
    """Only a torn tail may be dropped: readable changes after a bad line were acknowledged, so reading stops
    with an error naming the segment and line, and the file is left as it was."""
    path = tmp_path / segment_name(1)
    lines = write_segment(path, [{"seq": i, "type": "t", "coll": "c", "data": {"id": str(i)}} for i in (1, 2, 3)])
    broken = lines[0] + lines[1].replace(b'"id"', b'"iD"') + lines[2]
    path.write_bytes(broken)
    with pytest.raises(JournalCorrupt) as caught:
        read_all(path)
    assert (caught.value.segment, caught.value.line, caught.value.offset) == (path.name, 2, len(lines[0]))
    assert path.name in str(caught.value) and "line 2" in str(caught.value)
    assert path.read_bytes() == broken


def test_a_bad_last_line_of_an_older_segment_is_damage_not_a_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / segment_name(1)
    lines = write_segment(path, [{"seq": i, "type": "t", "coll": "c", "data": {"id": str(i)}} for i in (1, 2)])
    path.write_bytes(lines[0] + lines[1][:-7] + b"\n")
    with pytest.raises(JournalCorrupt):
        list(read_segment(path, RecoveryReport(), repair=True, last=False))
    got = list(read_segment(path, RecoveryReport(), repair=False, last=True))  # as the newest: a torn tail
    assert [r["seq"] for r in got] == [1]


def test_writer_groups_lines_and_reports_them_durable_in_order(tmp_path: Path) -> None:
    done: list[int] = []
    groups: list[int] = []
    finished = threading.Event()

    def on_durable(tickets: list[Any], seconds: float, error: BaseException | None) -> None:
        assert error is None
        done.extend(tickets)
        groups.append(len(tickets))
        if len(done) == 100:
            finished.set()

    writer = JournalWriter(tmp_path, 1, on_durable, fsync=True)
    recs = [{"seq": i, "type": "t", "coll": "c", "data": {"id": str(i)}} for i in range(1, 101)]
    for r in recs:
        writer.submit(encode_record(r), r["seq"])
    assert finished.wait(10)
    rotated = threading.Event()
    writer.rotate(101, rotated.set)
    assert rotated.wait(10)
    writer.submit(encode_record({"seq": 101, "type": "t", "coll": "c", "data": {"id": "101"}}), 101)
    writer.stop()
    assert done == list(range(1, 102))
    segments = list_segments(tmp_path)
    assert [first for first, _ in segments] == [1, 101]
    assert [r["seq"] for r in read_all(segments[0][1])[0]] == list(range(1, 101))
    assert [r["seq"] for r in read_all(segments[1][1])[0]] == [101]


def test_writer_appends_to_the_newest_existing_segment(tmp_path: Path) -> None:
    write_segment(tmp_path / segment_name(1), [{"seq": 1, "type": "t", "coll": "c", "data": {"id": "1"}}])
    write_segment(tmp_path / segment_name(2), [{"seq": 2, "type": "t", "coll": "c", "data": {"id": "2"}}])
    finished = threading.Event()
    writer = JournalWriter(tmp_path, 3, lambda tickets, s, e: finished.set())
    writer.submit(encode_record({"seq": 3, "type": "t", "coll": "c", "data": {"id": "3"}}), 3)
    assert finished.wait(10)
    writer.stop()
    assert len(list_segments(tmp_path)) == 2
    assert [r["seq"] for r in read_all(tmp_path / segment_name(2))[0]] == [2, 3]
    assert decode_line((tmp_path / segment_name(2)).read_bytes().splitlines(keepends=True)[-1]) == {
        "seq": 3, "type": "t", "coll": "c", "data": {"id": "3"}}


def test_a_journal_from_before_the_chain_is_refused_not_dropped(tmp_path: Path) -> None:
    """Its lines would all fail the new format's checks; read as a torn tail, the whole journal would go."""
    import zlib

    from fieldcomms.errors import StorageError

    body = b'{"seq":1,"type":"t","coll":"c","data":{"id":"1"}}'
    path = tmp_path / segment_name(1)
    path.write_bytes(b"%08x " % zlib.crc32(body) + body + b"\n")
    before = path.read_bytes()
    with pytest.raises(StorageError, match="before the tamper-evident chain"):
        read_all(path)
    assert path.read_bytes() == before
