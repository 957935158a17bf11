"""The reporters' mail outbox with several workers on one PostgreSQL database (real `fieldcomms serve`
processes, a real database, a real SMTP server: aiosmtpd on a free port). Every worker runs the outbox, yet each
reply reaches its recipient once: workers claim a message with a compare-and-set before sending it. A worker
killed (SIGKILL) while it holds a claim, before anything of the message left it, is replaced by another worker
after the claim's lease: the message is sent once, by that other worker. One killed while handing the message
over is not sent again (the SMTP server may have it): the reply is `failed`, never a second copy."""

from __future__ import annotations

import asyncio
import email
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import psycopg
import pytest
from aiosmtpd.controller import Controller
from procs import free_port
from test_pg_cluster import START_TIMEOUT, Worker, bearer, environment, user_add, workers

from fieldcomms.model import parse_time_str

pytestmark = pytest.mark.slow

TAG = "mailcluster"
CLAIM = "The police are closing every school in Sheffield tomorrow"
LEASE_S = 3.0
Json = dict[str, Any]


class Inbox:
    """An aiosmtpd handler that keeps what it receives. `data_delay_s` makes every DATA slow (two workers
    sending the same message would then overlap); `stall` holds the first connection at that command (EHLO or
    DATA) until `release` is set, so the worker sending it can be killed mid-way."""

    def __init__(self, data_delay_s: float = 0.0, stall: str | None = None) -> None:
        self.data_delay_s = data_delay_s
        self.stall = stall
        self.stalled = threading.Event()  # the first connection is being held
        self.release = threading.Event()
        self.messages: list[tuple[list[str], EmailMessage]] = []
        self.arrived: list[float] = []  # epoch seconds of each message taken
        self.ehlo = 0
        self.data = 0
        self.lock = threading.Lock()

    async def _hold(self, command: str, count: int) -> None:
        if self.stall == command and count == 1:
            self.stalled.set()
            await asyncio.to_thread(self.release.wait)

    async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname
        with self.lock:
            self.ehlo += 1
            count = self.ehlo
        await self._hold("EHLO", count)
        return responses

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.data += 1
            count = self.data
        await self._hold("DATA", count)
        await asyncio.sleep(self.data_delay_s)
        msg = email.message_from_bytes(envelope.content, policy=default_policy)
        assert isinstance(msg, EmailMessage)
        with self.lock:
            self.messages.append((list(envelope.rcpt_tos), msg))
            self.arrived.append(time.time())
        return "250 Message accepted"

    def recipients(self) -> list[str]:
        with self.lock:
            return sorted(r for rcpts, _ in self.messages for r in rcpts)


@contextmanager
def smtp(inbox: Inbox) -> Iterator[int]:
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port
    finally:
        inbox.release.set()
        controller.stop()


def config(tmp_path: Path, smtp_port: int) -> Path:
    path = tmp_path / "fieldcomms.toml"
    path.write_text(
        f'smtp_url = "smtp://127.0.0.1:{smtp_port}"\n'
        'mail_from = "desk@police.example"\n'
        "mail_retry_minutes = 1.0\n"  # retries 0.17 s apart at first: a lost claim is looked at again soon
        f"mail_lease_s = {LEASE_S}\n"
        'base_url = "https://fieldcomms.example"\n'
        "report_rate_per_minute = 6000.0\n"
        "report_burst = 100\n")
    return path


async def call(session: aiohttp.ClientSession, method: str, url: str, token: str | None = None,
               json: Json | None = None, status: int = 200) -> Json:
    headers = bearer(token) if token else {}
    # A worker learns of a change made on the other within a second: retry a 404 a little.
    deadline = time.monotonic() + 5
    while True:
        async with session.request(method, url, json=json, headers=headers) as resp:
            if resp.status == 404 and status != 404 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
                continue
            assert resp.status == status, f"{method} {url}: {resp.status} {await resp.text()}"
            body: Json = await resp.json()
            return body


async def publish(session: aiohttp.ClientSession, base: str, tokens: dict[str, str], contacts: list[str]) -> None:
    """An event, a rumour, one counted report per contact, then the verdict: one reply per contact."""
    await call(session, "POST", f"{base}/api/v1/events", tokens["control"],
               {"tag": TAG, "title": "Mail on many workers", "status": "live"}, 201)
    rumour = await call(session, "POST", f"{base}/api/v1/events/{TAG}/rumours", tokens["officer"],
                        {"claim": CLAIM}, 201)
    for n, contact in enumerate(contacts):
        report = await call(session, "POST", f"{base}/api/v1/events/{TAG}/reports", None,
                            {"text": f"schools closing? ({n})", "contact": contact}, 202)
        await call(session, "POST", f"{base}/api/v1/rumours/{rumour['id']}/sightings", tokens["officer"],
                   {"report_id": report["id"]}, 201)
    await call(session, "POST", f"{base}/api/v1/rumours/{rumour['id']}/rebuttals", tokens["officer"],
               {"verdict": "false", "text": "No school is closing. Every school opens as usual tomorrow."}, 201)


def mail_docs(url: str) -> list[Json]:
    """The mail documents as PostgreSQL holds them (what every worker reads)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT doc FROM fc_state WHERE coll = 'mail' AND seq > 0 ORDER BY id").fetchall()
    return [orjson.loads(bytes(doc)) for (doc,) in rows]


async def until(check: Any, within: float, what: str) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def tokens_for(url: str, tmp_path: Path) -> dict[str, str]:
    return {"control": user_add(url, tmp_path, "control1", "control"),
            "officer": user_add(url, tmp_path, "officer1", "officer")}


def supervise(url: str, tmp_path: Path, port: int, cfg: Path) -> subprocess.Popen[bytes]:
    with open(tmp_path / "sup.out", "wb") as out, open(tmp_path / "sup.err", "wb") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "fieldcomms", "serve", "--workers", "2", "--port", str(port), "--database-url",
             url, "--data-dir", str(tmp_path / "d"), "--config", str(cfg)],
            env=environment(), stdout=out, stderr=err, cwd=tmp_path)


async def test_two_workers_send_each_reply_once(pg_url: str, tmp_path: Path) -> None:
    """`serve --workers 2`: both workers run the outbox on the same twelve messages; a slow DATA (0.4 s) gives
    a second sender every chance to overlap. Each recipient gets exactly one message."""
    contacts = [f"reporter{n}@example.org" for n in range(12)]
    inbox = Inbox(data_delay_s=0.4)
    with smtp(inbox) as smtp_port:
        cfg = config(tmp_path, smtp_port)
        tokens = tokens_for(pg_url, tmp_path)
        port = free_port()
        proc = supervise(pg_url, tmp_path, port, cfg)
        try:
            base = f"http://127.0.0.1:{port}"
            async with aiohttp.ClientSession() as session:
                deadline = time.monotonic() + START_TIMEOUT
                while True:  # both workers up: the supervisor names their pids once it started them
                    assert proc.poll() is None, (tmp_path / "sup.err").read_text()
                    try:
                        async with session.get(f"{base}/healthz") as resp:
                            if resp.status == 200 and "pids" in (tmp_path / "sup.out").read_text():
                                break
                    except aiohttp.ClientError:
                        pass
                    assert time.monotonic() < deadline, (tmp_path / "sup.err").read_text()
                    await asyncio.sleep(0.1)
                pids = (tmp_path / "sup.out").read_text().split("pids", 1)[1].split("\n", 1)[0].split()
                assert len(pids) == 2
                await asyncio.sleep(2.0)  # the second worker also ready (it answers on the same port)
                await publish(session, base, tokens, contacts)
                await until(lambda: len(inbox.recipients()) >= len(contacts), 60, "every reply")
                # Longer than a lease and many retry intervals: nothing more arrives.
                await asyncio.sleep(LEASE_S + 2)
                assert inbox.recipients() == sorted(contacts), inbox.recipients()
                docs = mail_docs(pg_url)
                assert len(docs) == len(contacts) and all(d["status"] == "sent" for d in docs), docs
                senders = {d["claimed_by"].rsplit("/", 1)[1] for d in docs}
                assert senders <= set(pids), (senders, pids)
        finally:
            proc.terminate()
            assert proc.wait(timeout=30) == 0


@pytest.mark.parametrize("stage", ["EHLO", "DATA"])
async def test_a_worker_killed_holding_a_claim(pg_url: str, tmp_path: Path, stage: str) -> None:
    """Two workers; the SMTP server holds the first connection at EHLO (nothing of the message has left the
    worker) or at DATA (the server has it). The worker holding the claim is killed (SIGKILL) there.
    EHLO: after the lease, the other worker sends the message: one copy. DATA: the other worker marks the reply
    failed after the lease and sends nothing: never a second copy."""
    inbox = Inbox(stall=stage)
    with smtp(inbox) as smtp_port:
        cfg = config(tmp_path, smtp_port)
        tokens = tokens_for(pg_url, tmp_path)
        async with aiohttp.ClientSession() as session:
            with workers() as started:
                started += [Worker(pg_url, tmp_path, "--config", str(cfg)) for _ in range(2)]
                for w in started:
                    await w.ready(session)
                await publish(session, started[0].base, tokens, ["jo@example.org"])
                await until(inbox.stalled.is_set, 30, f"a worker's connection held at {stage}")
                claim = await until(lambda: [d for d in mail_docs(pg_url) if d.get("in_flight")], 10, "the claim")
                doc = claim[0]
                assert doc["handing"] is (stage == "DATA"), doc
                holder = int(doc["claimed_by"].rsplit("/", 1)[1])
                victims = [w for w in started if w.proc.pid == holder]
                assert len(victims) == 1, (holder, [w.proc.pid for w in started])
                victim = victims[0]
                survivor = next(w for w in started if w is not victim)
                victim.kill()
                # The held connection is dropped by the kill; a DATA held by the server is never completed.
                inbox.release.set()
                if stage == "EHLO":
                    await until(lambda: inbox.recipients(), LEASE_S + 20, "the message from the other worker")
                    assert inbox.arrived[0] >= doc["lease_until"]  # taken over after the lease, not before
                    done = await until(lambda: [d for d in mail_docs(pg_url) if d["status"] == "sent"], 10, "sent")
                    assert done[0]["claimed_by"].rsplit("/", 1)[1] == str(survivor.proc.pid), done
                    assert done[0]["attempts"] == 2, done
                else:
                    done = await until(lambda: [d for d in mail_docs(pg_url) if d["status"] == "failed"],
                                       LEASE_S + 20, "the reply failed")
                    failed_at = parse_time_str(done[0]["at"]).timestamp()
                    assert failed_at >= doc["lease_until"] - 0.001, (failed_at, doc)  # after the lease
                    assert "not sent again" in done[0]["error"] and done[0]["attempts"] == 1, done
                await asyncio.sleep(LEASE_S + 1.5)  # and nothing more, well after another lease
                assert inbox.data == 1, inbox.data  # one hand-over, ever: the survivor's (EHLO) or the victim's
                if stage == "EHLO":
                    assert inbox.recipients() == ["jo@example.org"] and inbox.ehlo >= 2
                else:  # the server may or may not have kept the killed worker's copy; there is no other
                    assert inbox.recipients() in ([], ["jo@example.org"]), inbox.recipients()
                # Control sees the outcome on the report, on the surviving worker.
                page = await call(session, "GET", f"{survivor.base}/api/v1/events/{TAG}/reports",
                                  tokens["control"])
                assert [r["reply"]["status"] for r in page["items"]] == ["sent" if stage == "EHLO" else "failed"]
                assert survivor.proc.poll() is None
