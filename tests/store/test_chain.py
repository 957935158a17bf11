"""The tamper-evident chain in the embedded store: its definition, history kept across snapshots, and the
purge primitive (`Store.redact`) that erases bytes from every file yet leaves the chain verifiable."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path
from typing import Any

import orjson
import pytest

from fieldcomms.check import check_data_dir
from fieldcomms.store import Store
from fieldcomms.store.chain import GENESIS, chain_of
from fieldcomms.store.journal import encode_line, is_compressed, list_segments, parse_line

EMAIL = "reporter.jones@example.org"


async def opened(path: Path, **kw: Any) -> Store:
    store = Store(path, **kw)
    await store.open()
    return store


def all_lines(data_dir: Path) -> list[bytes]:
    out: list[bytes] = []
    for _first, path in list_segments(data_dir):
        raw = gzip.decompress(path.read_bytes()) if is_compressed(path) else path.read_bytes()
        out.extend(raw.splitlines(keepends=True))
    return out


def every_byte_on_disk(data_dir: Path) -> list[tuple[Path, bytes]]:
    """Every file under the data directory, with compressed ones also read decompressed."""
    out = []
    for path in data_dir.rglob("*"):
        if path.is_file():
            raw = path.read_bytes()
            out.append((path, raw))
            if raw[:2] == b"\x1f\x8b":
                out.append((path, gzip.decompress(raw)))
    return out


def independent_chain(lines: list[bytes]) -> bytes:
    """The chain as API.md defines it, computed here without the store's code: SHA-256(prev || SHA-256(
    canonical record)), canonical = sorted keys, no spaces, UTF-8; genesis = 32 zero bytes."""
    head = bytes(32)
    for line in lines:
        record = orjson.loads(line.split(b" ", 2)[2])
        canonical = orjson.dumps(record, option=orjson.OPT_SORT_KEYS)
        assert b" " not in canonical.replace(b'" "', b"").split(b'"text":')[0]  # no separators added
        head = hashlib.sha256(head + hashlib.sha256(canonical).digest()).digest()
    return head


async def test_each_line_carries_the_chain_hash_over_the_canonical_record(tmp_path: Path) -> None:
    store = await opened(tmp_path)
    assert store.chain_head() == (0, "0" * 64)
    records = []
    for i in range(5):
        doc = await store.append("update", "updates", {"id": f"u{i}", "event": "ev", "text": f"t {i} \u00e9"},
                                 aux=lambda d: [("idempotency", {"id": f"k{d['seq']}", "at": 1.0})])
        records.append({"seq": doc["seq"], "type": "update", "coll": "updates", "data": doc,
                        "aux": [["idempotency", {"id": f"k{doc['seq']}", "at": 1.0, "seq": doc["seq"]}]]})
    seq, head = store.chain_head()
    await store.close(snapshot=False)
    assert seq == 5 and head == chain_of(records).hex()
    lines = all_lines(tmp_path)
    assert independent_chain(lines).hex() == head
    assert [parse_line(line).chain.hex() for line in lines][-1] == head  # type: ignore[union-attr]
    assert GENESIS == bytes(32)


async def test_the_chain_continues_across_snapshots_and_restarts_and_history_is_kept(tmp_path: Path) -> None:
    store = await opened(tmp_path, snapshot_every=7)
    for i in range(30):
        await store.append("update", "updates", {"id": f"u{i % 9}", "event": "ev", "text": str(i)})
    await store.snapshot()
    await store.close(snapshot=False)  # waits for a periodic snapshot in flight
    head, snapshot_seq = store.chain_head(), store.snapshot_seq

    again = await opened(tmp_path, snapshot_every=7)
    assert again.chain_head() == head and again.snapshot_seq == snapshot_seq > 0
    assert again.recovery.segments == [list_segments(tmp_path)[-1][1].name]  # history is not read on start
    for i in range(30, 40):
        await again.append("update", "updates", {"id": f"u{i % 9}", "event": "ev", "text": str(i)})
    head = again.chain_head()
    await again.close()

    segments = list_segments(tmp_path)
    assert len(segments) > 3 and all(is_compressed(p) for _f, p in segments[:-1])
    lines = all_lines(tmp_path)
    assert [orjson.loads(line.split(b" ", 2)[2])["seq"] for line in lines] == list(range(1, 41))
    assert independent_chain(lines).hex() == head[1] and head[0] == 40
    report = check_data_dir(tmp_path)
    assert report.ok, report.lines()
    assert report.chain_head == head[1] and report.journal_records == 40


async def test_chain_head_is_the_newest_durable_change(tmp_path: Path) -> None:
    store = await opened(tmp_path)
    fut = store.append_nowait("update", "updates", {"id": "a", "event": "ev"})
    assert store.chain_head()[0] == 0  # assigned, not yet durable
    await fut
    assert store.chain_head()[0] == 1
    await store.close()


async def _purgeable(tmp_path: Path) -> Store:
    """A store whose history holds the e-mail address in a compressed segment, the newest segment, an aux
    document and the snapshot."""
    store = await opened(tmp_path, snapshot_every=10**9)
    await store.append("event", "events", {"id": "ev", "tag": "ev"})
    await store.append("report", "reports", {"id": "rep1", "event": "ev", "text": "crowd at gate",
                                             "contact": {"email": EMAIL}})
    await store.append("position", "positions", {"id": "pos1", "event": "ev", "lat": 53.1, "lon": -1.4,
                                                 "by": EMAIL})
    for i in range(5):
        await store.append("update", "updates", {"id": f"u{i}", "event": "ev", "text": f"update {i}"})
    await store.snapshot()  # the segment so far is closed and compressed
    await store.append("report", "reports", {"id": "rep1", "event": "ev", "text": "crowd at gate, moving",
                                             "contact": {"email": EMAIL}},
                       aux=lambda d: [("idempotency", {"id": "idem1", "at": 1.0, "body": {"contact": EMAIL}})])
    await store.append("update", "updates", {"id": "u9", "event": "ev", "text": "after"})
    await store.snapshot()  # the snapshot holds the address too
    await store.append("update", "updates", {"id": "u10", "event": "ev", "text": "tail"})
    return store


async def test_redact_erases_the_bytes_from_every_file_and_the_chain_still_verifies(tmp_path: Path) -> None:
    store = await _purgeable(tmp_path)
    assert any(EMAIL.encode() in raw for _p, raw in every_byte_on_disk(tmp_path))
    head = store.chain_head()
    touched = await store.redact([("reports", "rep1", ["contact"]), ("positions", "pos1", None),
                                  ("idempotency", "idem1", None)])
    assert touched == 3  # the two report lines (one also holding the idempotency answer) and the position
    assert store.chain_head() == head  # nothing new was chained: the purge rewrote, it did not append

    report = store.get("reports", "rep1")
    assert report is not None and "contact" not in report and report["text"] == "crowd at gate, moving"
    assert store.get("positions", "pos1") == {"id": "pos1", "seq": 3, "event": "ev", "redacted": True}
    await store.append("update", "updates", {"id": "u11", "event": "ev", "text": "life goes on"})
    await store.close(snapshot=False)

    found = [str(p) for p, raw in every_byte_on_disk(tmp_path) if EMAIL.encode() in raw]
    assert found == []
    check = check_data_dir(tmp_path)
    assert check.ok, check.lines()
    redacted = [orjson.loads(line.split(b" ", 2)[2]) for line in all_lines(tmp_path) if b'"redacted":true' in line]
    assert {r["seq"] for r in redacted} == {2, 3, 9}
    assert all(len(bytes.fromhex(r["digest"])) == 32 for r in redacted)

    again = await opened(tmp_path)
    try:
        assert "contact" not in again.get("reports", "rep1")  # type: ignore[operator]
        assert again.get("positions", "pos1")["redacted"] is True  # type: ignore[index]
        assert again.get("idempotency", "idem1")["redacted"] is True  # type: ignore[index]
    finally:
        await again.close(snapshot=False)


async def test_an_ordinary_edit_still_fails_check_after_a_redaction(tmp_path: Path) -> None:
    store = await _purgeable(tmp_path)
    await store.redact([("reports", "rep1", ["contact"])])
    await store.close(snapshot=False)
    assert check_data_dir(tmp_path).ok
    # Edit the remaining text of a redacted line with its checksum recomputed: covered only by the stored
    # digest, so the chain cannot see it (documented); an edit of a line that was not redacted it does see.
    for _first, path in list_segments(tmp_path):
        raw = path.read_bytes()
        text = gzip.decompress(raw) if is_compressed(path) else raw
        if b'"tail"' in text:
            lines = text.splitlines(keepends=True)
            k = next(i for i, raw in enumerate(lines) if b'"tail"' in raw)
            line = parse_line(lines[k])
            assert line is not None and line.record["data"]["text"] == "tail"
            lines[k] = encode_line(line.body.replace(b'"tail"', b'"TAIL"'), line.chain)
            edited = b"".join(lines)
            path.write_bytes(gzip.compress(edited) if is_compressed(path) else edited)
    check = check_data_dir(tmp_path)
    assert not check.ok and check.first_break == line.record["seq"]


async def test_redact_checks_its_arguments_and_a_closed_store(tmp_path: Path) -> None:
    store = await opened(tmp_path)
    await store.append("update", "updates", {"id": "u1", "event": "ev", "text": "x"})
    assert await store.redact([]) == 0
    assert await store.redact([("updates", "nope", None)]) == 0
    await store.close()
    with pytest.raises(Exception, match="not open"):
        await store.redact([("updates", "u1", None)])


async def test_appends_during_a_redaction_are_kept_and_the_chain_stays_whole(tmp_path: Path) -> None:
    import asyncio

    store = await _purgeable(tmp_path)
    purge = asyncio.ensure_future(store.redact([("reports", "rep1", None)]))
    posts = [store.append_nowait("update", "updates", {"id": f"c{i}", "event": "ev", "text": EMAIL})
             for i in range(50)]
    await asyncio.gather(purge, *posts)
    assert store.get("reports", "rep1")["redacted"] is True  # type: ignore[index]
    head = store.chain_head()
    await store.close(snapshot=False)
    report = check_data_dir(tmp_path)
    assert report.ok and report.chain_head == head[1], report.lines()
    again = await opened(tmp_path)
    try:
        assert all(again.get("updates", f"c{i}")["text"] == EMAIL for i in range(50))  # type: ignore[index]
        assert again.chain_head() == head
    finally:
        await again.close(snapshot=False)


async def test_a_repeated_or_widened_redaction_keeps_the_original_digest(tmp_path: Path) -> None:
    store = await _purgeable(tmp_path)
    assert await store.redact([("reports", "rep1", ["contact"])]) == 2
    assert await store.redact([("reports", "rep1", ["contact"])]) == 0  # nothing left to erase: idempotent
    assert await store.redact([("reports", "rep1", None)]) == 2  # widened: the stored digest is the original's
    await store.close(snapshot=False)
    report = check_data_dir(tmp_path)
    assert report.ok, report.lines()
