"""`fieldcomms check` finds what is wrong with a data directory and changes nothing."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from fieldcomms.check import check_data_dir
from fieldcomms.store import Store
from fieldcomms.store.journal import list_segments


async def _store_with(path: Path, n: int, *, close: bool = True) -> Store:
    store = Store(path)
    await store.open()
    for i in range(n):
        await store.append("update", "updates", {"id": f"u{i}", "event": "ev", "text": str(i)})
    if close:
        await store.close(snapshot=False)
    return store


async def test_clean_directory_is_ok(tmp_path: Path):
    await _store_with(tmp_path, 5)
    report = check_data_dir(tmp_path)
    assert report.ok, report.lines()
    assert report.journal_records == 5 and report.last_seq == 5


async def test_torn_tail_is_a_note_and_corruption_inside_is_a_problem(tmp_path: Path):
    await _store_with(tmp_path, 5)
    (_first, seg) = list_segments(tmp_path)[-1]
    data = seg.read_bytes()
    seg.write_bytes(data + data[:20])  # a torn last line
    before = seg.read_bytes()
    report = check_data_dir(tmp_path)
    assert report.ok and any("torn tail" in n for n in report.notes)
    assert seg.read_bytes() == before  # check changes nothing
    lines = data.splitlines(keepends=True)
    lines[2] = lines[2].replace(b'"text":"2"', b'"text":"X"')
    seg.write_bytes(b"".join(lines))
    # the bad line is now the last readable point: everything after it is unreachable
    report = check_data_dir(tmp_path)
    assert any("torn tail" in n for n in report.notes) or report.problems
    assert report.journal_records == 2


async def test_missing_media_file_is_a_problem(tmp_path: Path):
    store = Store(tmp_path)
    await store.open()
    await store.append("photo", "photos", {"id": "a" * 64, "url": "/media/" + "a" * 64})
    await store.close(snapshot=True)
    report = check_data_dir(tmp_path)
    assert not report.ok
    assert any("a" * 64 in p and "missing" in p for p in report.problems)


def test_check_command_exit_codes(tmp_path: Path):
    asyncio.run(_store_with(tmp_path / "good", 3))
    ok = subprocess.run([sys.executable, "-m", "fieldcomms", "check", "--data-dir", str(tmp_path / "good")],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip().endswith("OK")
    bad = subprocess.run([sys.executable, "-m", "fieldcomms", "check", "--data-dir", str(tmp_path / "missing")],
                         capture_output=True, text=True)
    assert bad.returncode == 1
    assert "not a directory" in bad.stdout
