"""Tamper tests on a stopped server's files: `fieldcomms check` names the first seq where the chain breaks
(exit 1) and passes an untouched copy (exit 0); damage that is not a torn tail stops the start, naming the
segment and line, and `fieldcomms salvage` keeps what can be kept after copying the damage aside.

One real server fills a data directory over HTTP (with snapshots every 25 changes, so history is spread
over compressed segments, a plain newest segment and a snapshot); every test works on its own copy."""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from procs import free_port, stop

from fieldcomms.store.journal import encode_line, is_compressed, list_segments, parse_line

pytestmark = pytest.mark.slow

UPDATES = 60


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIELDCOMMS_")}
    env.update({"FIELDCOMMS_LOG_LEVEL": "WARNING", "FIELDCOMMS_DEMO_ADMIN": "false",
                "FIELDCOMMS_SNAPSHOT_EVERY": "25"})
    return env


def fieldcomms(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fieldcomms", *args, "--data-dir", str(data_dir)],
                          env=environment(), capture_output=True, text=True, timeout=120)


def call(port: int, method: str, path: str, token: str | None = None, body: Any = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method, headers=headers,
                                 data=None if body is None else json.dumps(body).encode())
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


class Serving:
    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen([sys.executable, "-m", "fieldcomms", "serve", "--data-dir", str(data_dir),
                                      "--port", str(self.port)], env=environment(),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited: {self.proc.communicate()}")
            try:
                if call(self.port, "GET", "/healthz")[0] == 200:
                    return
            except OSError:
                time.sleep(0.05)  # polling for readiness, not timing anything
        raise AssertionError("server not ready")


def token_of(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, Any]]]:
    data = tmp_path_factory.mktemp("chain") / "data"
    admin = token_of(fieldcomms("user", "add", "--name", "Admin", "--callsign", "Admin1", "--role", "admin",
                                data_dir=data))
    control = token_of(fieldcomms("user", "add", "--name", "Control", "--callsign", "Gold1", "--role", "control",
                                  data_dir=data))
    server = Serving(data)
    try:
        server.wait_ready()
        status, _ = call(server.port, "POST", "/api/v1/events", control,
                         {"tag": "chaintest", "title": "Chain test", "status": "live"})
        assert status == 201
        for i in range(UPDATES):
            status, _ = call(server.port, "POST", "/api/v1/events/chaintest/updates", control,
                             {"text": f"update {i}", "visibility": "public" if i % 2 else "internal"})
            assert status == 201
        facts: dict[str, Any] = {"head": call(server.port, "GET", "/api/v1/chain/head", admin),
                                 "head_control": call(server.port, "GET", "/api/v1/chain/head", control)[0],
                                 "head_public": call(server.port, "GET", "/api/v1/chain/head")[0]}
    finally:
        stop(server.proc)
    yield data, facts


@pytest.fixture
def copy(pristine: tuple[Path, dict[str, Any]], tmp_path: Path) -> Path:
    target = tmp_path / "data"
    shutil.copytree(pristine[0], target, ignore=shutil.ignore_patterns("LOCK"))
    return target


def segment_lines(path: Path) -> list[bytes]:
    raw = path.read_bytes()
    return (gzip.decompress(raw) if is_compressed(path) else raw).splitlines(keepends=True)


def write_segment(path: Path, lines: list[bytes]) -> None:
    raw = b"".join(lines)
    path.write_bytes(gzip.compress(raw) if is_compressed(path) else raw)


def find(data: Path, seq: int) -> tuple[Path, list[bytes], int]:
    """The segment holding seq, its lines and the line's index."""
    for _first, path in list_segments(data):
        lines = segment_lines(path)
        for k, raw in enumerate(lines):
            line = parse_line(raw)
            if line is not None and line.record["seq"] == seq:
                return path, lines, k
    raise AssertionError(f"seq {seq} not found")


def check(data: Path) -> tuple[int, str]:
    done = fieldcomms("check", data_dir=data)
    return done.returncode, done.stdout + done.stderr


def assert_breaks_at(data: Path, seq: int) -> str:
    code, out = check(data)
    assert code == 1, out
    assert f"the chain breaks at seq {seq}:" in out and f"BROKEN at seq {seq}" in out, out
    return out


def test_untouched_copy_passes_and_its_head_is_the_servers(pristine: tuple[Path, dict[str, Any]], copy: Path):
    _data, facts = pristine
    status, head = facts["head"]
    assert status == 200 and head["seq"] >= UPDATES + 3 and re.fullmatch("[0-9a-f]{64}", head["hash"])
    assert facts["head_control"] == 403 and facts["head_public"] == 401
    code, out = check(copy)
    assert code == 0, out
    assert f"chain: verified from seq 1 to {head['seq']}, head {head['hash']}" in out
    segments = list_segments(copy)
    assert len(segments) >= 3 and is_compressed(segments[0][1]) and not is_compressed(segments[-1][1])


@pytest.mark.parametrize("where", ["history", "newest"])
def test_an_edit_with_its_line_checksum_recomputed_is_named(copy: Path, where: str):
    seqs = [line.record["seq"] for raw in segment_lines(list_segments(copy)[-1 if where == "newest" else 0][1])
            if (line := parse_line(raw)) is not None and line.record["coll"] == "updates"]
    seq = seqs[len(seqs) // 2]
    path, lines, k = find(copy, seq)
    line = parse_line(lines[k])
    assert line is not None
    lines[k] = encode_line(line.body.replace(b'"text":"update', b'"text":"UPDATE'), line.chain)
    assert parse_line(lines[k]) is not None  # the checksum is right: only the chain can tell
    write_segment(path, lines)
    assert_breaks_at(copy, seq)


def test_an_edit_with_its_chain_hash_recomputed_too_is_named(copy: Path):
    from fieldcomms.store.chain import link, record_digest

    seq = 30
    path, lines, k = find(copy, seq)
    line, before = parse_line(lines[k]), parse_line(find(copy, seq - 1)[1][find(copy, seq - 1)[2]])
    assert line is not None and before is not None
    body = line.body.replace(b'"text":"update', b'"text":"forged')
    lines[k] = encode_line(body, link(before.chain, record_digest(body)))
    write_segment(path, lines)
    # The forged line links to its predecessor, so the chain itself breaks at the next change; the snapshot,
    # which holds that update as it was written, disagrees first.
    out = assert_breaks_at(copy, seq)
    assert "snapshot.jsonl disagrees with the journal" in out and "the chain breaks at seq 31:" in out


def test_a_removed_change_is_named(copy: Path):
    path, lines, k = find(copy, 40)
    write_segment(path, lines[:k] + lines[k + 1:])
    assert "change 40 is missing" in assert_breaks_at(copy, 40)


def test_two_swapped_changes_are_named(copy: Path):
    path, lines, k = find(copy, 12)
    assert parse_line(lines[k + 1]).record["seq"] == 13  # type: ignore[union-attr]
    lines[k], lines[k + 1] = lines[k + 1], lines[k]
    write_segment(path, lines)
    assert_breaks_at(copy, 12)


def test_an_inserted_change_is_named(copy: Path):
    path, lines, k = find(copy, 20)
    lines.insert(k + 1, lines[k - 3])  # an older change, checksum intact, put back in
    write_segment(path, lines)
    assert "seq 17 appears where 21 belongs" in assert_breaks_at(copy, 21)


def test_a_snapshot_that_disagrees_with_the_journal_is_named(copy: Path):
    snap = copy / "snapshot.jsonl"
    lines = snap.read_bytes().splitlines(keepends=True)
    k, doc = next((k, orjson.loads(raw)[1]) for k, raw in enumerate(lines[1:], start=1)
                  if orjson.loads(raw)[0] == "updates")
    lines[k] = orjson.dumps(["updates", {**doc, "text": "rewritten"}]) + b"\n"
    snap.write_bytes(b"".join(lines))
    assert "snapshot.jsonl disagrees with the journal" in assert_breaks_at(copy, doc["seq"])


def test_a_snapshot_whose_chain_hash_was_changed_is_named(copy: Path):
    snap = copy / "snapshot.jsonl"
    lines = snap.read_bytes().splitlines(keepends=True)
    header = orjson.loads(lines[0])
    lines[0] = orjson.dumps({**header, "chain": "ab" * 32}) + b"\n"
    snap.write_bytes(b"".join(lines))
    assert_breaks_at(copy, header["seq"])


def test_a_torn_tail_is_dropped_on_start_and_is_only_a_note(copy: Path):
    path = list_segments(copy)[-1][1]
    good = path.read_bytes()
    path.write_bytes(good + good.splitlines(keepends=True)[-1][:40])
    code, out = check(copy)
    assert code == 0 and "torn tail" in out, out
    server = Serving(copy)
    try:
        server.wait_ready()
    finally:
        stop(server.proc)
    assert path.read_bytes() == good
    assert check(copy)[0] == 0


def test_damage_before_readable_changes_stops_the_start_and_salvage_keeps_the_rest(copy: Path):
    path = list_segments(copy)[-1][1]
    lines = segment_lines(path)
    assert len(lines) >= 5
    lost = parse_line(lines[2]).record["seq"]  # type: ignore[union-attr]
    lines[2] = lines[2][:30] + b"#" + lines[2][31:]  # a flipped byte: its checksum no longer matches
    write_segment(path, lines)
    damaged = path.read_bytes()

    server = Serving(copy)
    out, err = server.proc.communicate(timeout=60)
    assert server.proc.returncode == 1
    assert f"{path.name}: line 3" in err.decode() and "salvage" in err.decode(), err
    assert path.read_bytes() == damaged  # nothing dropped
    code, out_check = check(copy)
    assert code == 1 and f"{path.name}: line 3" in out_check, out_check

    done = fieldcomms("salvage", data_dir=copy)
    assert done.returncode == 0, done.stderr
    copies = list((copy / "damaged").iterdir())
    assert len(copies) == 1 and copies[0].read_bytes() == damaged
    assert f"LOST: changes {lost} to {lost}" in done.stdout
    kept = [parse_line(raw).record["seq"] for raw in segment_lines(path)]  # type: ignore[union-attr]
    assert lost not in kept and len(kept) == len(lines) - 1

    code, out_check = check(copy)
    assert code == 0 and f"changes {lost} to {lost} were lost to damage" in out_check, out_check
    server = Serving(copy)
    try:
        server.wait_ready()
    finally:
        stop(server.proc)
    again = fieldcomms("salvage", data_dir=copy)
    assert again.returncode == 0 and "Nothing to salvage" in again.stdout


def test_a_gap_that_salvage_did_not_make_still_fails(copy: Path):
    """salvage.json vouches only for the seqs it lists."""
    (copy / "salvage.json").write_text(json.dumps({"lost": [[3, 3]], "history": []}))
    path, lines, k = find(copy, 50)
    write_segment(path, lines[:k] + lines[k + 1:])
    assert_breaks_at(copy, 50)
