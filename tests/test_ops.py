"""Operations: /metrics (admin or an allowed address) and the JSON access log."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from fieldcomms.app import create_app
from fieldcomms.config import Settings
from fieldcomms.ops import JsonFormatter
from tests.conftest import auth
from tests.procs import free_port, stop


async def test_metrics_need_admin(client, admin_token, officer_token, control_token):
    assert (await client.get("/metrics")).status == 401
    assert (await client.get("/metrics", headers=auth(officer_token))).status == 403
    assert (await client.get("/metrics", headers=auth(control_token))).status == 403
    resp = await client.get("/metrics", headers=auth(admin_token))
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain")


async def test_metrics_report_requests_store_and_fsync(client, admin_token, event, officer_token):
    for i in range(3):
        r = await client.post(f"/api/v1/events/{event['tag']}/updates", json={"text": f"u{i}"},
                              headers=auth(officer_token))
        assert r.status == 201
    assert (await client.get("/api/v1/events/nope")).status == 404
    text = await (await client.get("/metrics", headers=auth(admin_token))).text()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    posts = [s for s in families["fieldcomms_requests"].samples
             if s.name == "fieldcomms_requests_total" and s.labels["route"] == "/api/v1/events/{tag}/updates"
             and s.labels["method"] == "POST" and s.labels["status"] == "201"]
    assert posts and posts[0].value == 3
    missing = [s for s in families["fieldcomms_requests"].samples
               if s.name == "fieldcomms_requests_total" and s.labels["status"] == "404"]
    assert missing and missing[0].labels["route"] == "/api/v1/events/{tag}"
    buckets = [s for s in families["fieldcomms_request_seconds"].samples
               if s.name.endswith("_count") and s.labels["route"] == "/api/v1/events/{tag}/updates"]
    assert buckets[0].value == 3
    docs = {s.labels["collection"]: s.value for s in families["fieldcomms_store_documents"].samples}
    assert docs["updates"] == 3 and docs["events"] == 1
    fsyncs = [s for s in families["fieldcomms_journal_fsyncs"].samples if s.name.endswith("_total")]
    assert fsyncs[0].value >= 1
    assert families["fieldcomms_store_disk_bytes"].samples[0].value > 0


async def test_metrics_open_to_an_allowed_address(aiohttp_client, tmp_path: Path):
    app = create_app(Settings(data_dir=str(tmp_path / "d"), demo_admin=False, metrics_allow=["127.0.0.1"]))
    client = await aiohttp_client(app)
    assert (await client.get("/metrics")).status == 200


async def test_access_log_is_json_without_secrets(client, officer_token, event, caplog):
    caplog.set_level(logging.INFO, logger="fieldcomms.access")
    r = await client.post(f"/api/v1/events/{event['tag']}/updates?x=1", json={"text": "logged"},
                          headers=auth(officer_token))
    assert r.status == 201
    formatter = JsonFormatter()
    lines = [json.loads(formatter.format(rec)) for rec in caplog.records if rec.name == "fieldcomms.access"]
    post = [line for line in lines if line["method"] == "POST" and line["status"] == 201][-1]
    assert post["callsign"] == "officer1"
    assert post["route"] == "/api/v1/events/{tag}/updates"
    assert post["path"] == f"/api/v1/events/{event['tag']}/updates"
    assert officer_token not in caplog.text and all(officer_token not in json.dumps(line) for line in lines)
    assert "logged" not in caplog.text  # no bodies
    assert {"ts", "level", "logger", "msg"} <= set(post) and post["level"] == "INFO"


def test_every_log_line_of_a_running_server_is_one_json_object(tmp_path: Path) -> None:
    """The server's own logs, aiohttp's and the access log share one format on standard error: one JSON
    object per line with ts, level, logger and msg. DEBUG brings asyncio's and the server's own lines."""
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("FIELDCOMMS_")},
           "FIELDCOMMS_LOG_LEVEL": "debug", "FIELDCOMMS_DEMO_ADMIN": "false"}
    err_path = tmp_path / "stderr"
    with err_path.open("wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "fieldcomms", "serve", "--port", str(port),
                                 "--data-dir", str(tmp_path / "data")], env=env, stdout=subprocess.DEVNULL,
                                stderr=err)
        try:
            deadline = time.monotonic() + 30
            while True:
                assert proc.poll() is None, err_path.read_text()
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz") as resp:
                        assert resp.status == 200
                        break
                except OSError:
                    assert time.monotonic() < deadline, err_path.read_text()
                    time.sleep(0.1)
            with contextlib.suppress(urllib.error.HTTPError):
                urllib.request.urlopen(f"http://127.0.0.1:{port}/no/such/page%0Aforged-line")
            # A malformed request, which aiohttp's own protocol code logs.
            with socket.create_connection(("127.0.0.1", port)) as sock:
                sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
                sock.recv(4096)
        finally:
            stop(proc)
    lines = err_path.read_text().splitlines()
    assert lines, "nothing was logged"
    records = []
    for line in lines:
        record = json.loads(line)  # every line, without exception
        assert isinstance(record, dict) and {"ts", "level", "logger", "msg"} <= set(record), line
        assert record["ts"].endswith("Z")
        records.append(record)
    loggers = {r["logger"] for r in records}
    assert "fieldcomms.access" in loggers and loggers - {"fieldcomms.access"}, loggers
    access = [r for r in records if r["logger"] == "fieldcomms.access"]
    assert {(r["path"], r["status"]) for r in access} >= {("/healthz", 200)}
    assert any(r["status"] == 404 for r in access)


async def test_metrics_count_open_stream_subscribers(client, admin_token, event):
    async def subscribers() -> float:
        text = await (await client.get("/metrics", headers=auth(admin_token))).text()
        families = {f.name: f for f in text_string_to_metric_families(text)}
        return families["fieldcomms_stream_subscribers"].samples[0].value

    assert await subscribers() == 0
    streams = [await client.get(f"/api/v1/events/{event['tag']}/stream") for _ in range(3)]
    for stream in streams:
        await stream.content.readuntil(b"retry: 3000")
    assert await subscribers() == 3
    for stream in streams:
        stream.close()
