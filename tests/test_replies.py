"""Answers mailed back to the people who reported a rumour, through a real SMTP server (aiosmtpd on a free port):
the messages it receives are parsed and checked; a refusing or absent server is retried and ends `failed` with
the reason while the verdict is published at once; a message waiting when the server stops is sent after it
starts; a report gets at most one message per rumour."""

from __future__ import annotations

import asyncio
import email
import time
from collections.abc import AsyncIterator
from email.message import EmailMessage
from email.policy import default as default_policy
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiosmtpd.controller import Controller
from answer import ok
from conftest import auth, make_user
from procs import free_port

from fieldcomms.app import create_app
from fieldcomms.config import Settings
from fieldcomms.keys import SERVICES

Json = dict[str, Any]
TAG = "replies"
CLAIM = "Police snipers are on the roofs of Fargate"
ANSWER = 'There are no snipers. The roofs of Fargate, photographed at 10:05 <from the Town Hall> & the "car park".'


class Inbox:
    """An aiosmtpd handler keeping every message; `refuse` makes it answer DATA with a permanent failure."""

    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse
        self.messages: list[tuple[list[str], EmailMessage]] = []
        self.attempts = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.attempts += 1
        if self.refuse:
            return "554 5.7.1 Relaying refused for this test"
        msg = email.message_from_bytes(envelope.content, policy=default_policy)
        assert isinstance(msg, EmailMessage)
        self.messages.append((list(envelope.rcpt_tos), msg))
        return "250 Message accepted"


async def smtp_server(inbox: Inbox, port: int) -> Controller:
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    await asyncio.to_thread(controller.start)
    return controller


def settings_for(tmp_path: Path, smtp_port: int | None, retry_minutes: float = 60.0) -> Settings:
    return Settings(data_dir=str(tmp_path / "data"), fsync=False, demo_admin=False,
                    smtp_url=f"smtp://127.0.0.1:{smtp_port}" if smtp_port else "", mail_from="desk@police.example",
                    mail_retry_minutes=retry_minutes, base_url="https://fieldcomms.example",
                    report_rate_per_minute=6000, report_burst=100)


async def setup_event(client: TestClient) -> tuple[dict[str, str], Json]:
    tokens = {"control": await make_user(client.app, "control", "CTRL"),
              "officer": await make_user(client.app, "officer", "PC12")}
    await ok(await client.post("/api/v1/events", json={"tag": TAG, "title": "Replies", "status": "live"},
                               headers=auth(tokens["control"])), 201)
    rumour = await ok(await client.post(f"/api/v1/events/{TAG}/rumours", json={"claim": CLAIM},
                                        headers=auth(tokens["officer"])), 201)
    return tokens, rumour


async def report(client: TestClient, text: str, contact: str | None) -> str:
    body: Json = {"text": text} if contact is None else {"text": text, "contact": contact}
    return str((await ok(await client.post(f"/api/v1/events/{TAG}/reports", json=body), 202))["id"])


async def count(client: TestClient, token: str, rumour_id: str, report_id: str) -> None:
    await ok(await client.post(f"/api/v1/rumours/{rumour_id}/sightings", json={"report_id": report_id},
                               headers=auth(token)), 201)


async def reply_of(client: TestClient, token: str, report_id: str) -> Json | None:
    page = await ok(await client.get(f"/api/v1/events/{TAG}/reports?limit=500", headers=auth(token)))
    found = [r for r in page["items"] if r["id"] == report_id]
    assert found, report_id
    reply: Json | None = found[0].get("reply")
    return reply


async def wait_for(check: Any, within: float = 15.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = await check()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


@pytest.fixture
async def inbox() -> AsyncIterator[tuple[Inbox, int]]:
    box = Inbox()
    port = free_port()
    controller = await smtp_server(box, port)
    yield box, port
    await asyncio.to_thread(controller.stop)


async def test_each_counted_reporter_gets_one_message_in_plain_text_and_html_with_the_verdict(
        tmp_path: Path, inbox: tuple[Inbox, int]) -> None:
    box, port = inbox
    async with TestClient(TestServer(create_app(settings_for(tmp_path, port)))) as client:
        tokens, rumour = await setup_event(client)
        officer, control = tokens["officer"], tokens["control"]
        jo = await report(client, "someone said snipers on the roofs", "jo@example.org")
        sam = await report(client, "snipers on fargate roofs??", "Sam.Smith+fc@mail.example.co.uk")
        anon = await report(client, "snipers!", None)
        uncounted = await report(client, "snipers on the roof", "nobody@example.org")
        for rep in (jo, sam, anon):
            await count(client, officer, rumour["id"], rep)
        assert await reply_of(client, control, jo) is None

        started = time.monotonic()
        answered = await ok(await client.post(f"/api/v1/rumours/{rumour['id']}/rebuttals", json={
            "verdict": "false", "text": ANSWER}, headers=auth(officer)), 201)
        assert answered["status"] == "false" and time.monotonic() - started < 2.0

        await wait_for(lambda: _async(len(box.messages) >= 2))
        await asyncio.sleep(0.3)  # nothing more arrives
        assert sorted(r for rcpts, _ in box.messages for r in rcpts) == [
            "Sam.Smith+fc@mail.example.co.uk", "jo@example.org"]
        for rcpts, msg in box.messages:
            assert msg["To"] == rcpts[0]
            assert msg["From"] == "desk@police.example"
            assert msg["Subject"] == f"FALSE: {CLAIM}"
            assert msg["Auto-Submitted"] == "auto-generated"
            assert msg["Message-ID"] and msg["Date"]
            # Plain text, and an HTML alternative of the same message.
            assert msg.get_content_type() == "multipart/alternative"
            parts = [part.get_content_type() for part in msg.iter_parts()]
            assert parts == ["text/plain", "text/html"], parts
            text = body_of(msg, "plain")
            assert "Our answer: FALSE" in text and "this claim is false" in text
            assert ANSWER in " ".join(text.split())
            board = f"https://fieldcomms.example/events/{TAG}/rumours#rumour-{rumour['id']}"
            assert board in text
            assert CLAIM in " ".join(text.split())
            page = body_of(msg, "html")
            seen = Page()
            seen.feed(page)
            words = " ".join(" ".join(seen.text).split())
            assert "Our answer: FALSE." in words and "this claim is false" in words
            assert ANSWER in words and CLAIM in words  # what a mail reader shows, special characters and all
            assert board in seen.links
            # The answer's HTML special characters arrive escaped: as text, never as markup.
            assert "&lt;from the Town Hall&gt; &amp; the &quot;car park&quot;" in page
            assert "<from" not in page and seen.tags <= {"html", "head", "meta", "title", "body", "p", "blockquote",
                                                          "strong", "br", "a"}, seen.tags
        for rep in (jo, sam):
            reply = await wait_for(lambda rep=rep: _sent(client, control, rep))
            assert set(reply) == {"status", "at"}
        assert await reply_of(client, control, anon) is None
        assert await reply_of(client, control, uncounted) is None
        # Officers do not see replies (nor contacts).
        page = await ok(await client.get(f"/api/v1/events/{TAG}/reports", headers=auth(officer)))
        assert all("reply" not in r and "contact" not in r for r in page["items"])

        # The answer is withdrawn and published again: nobody gets a second message.
        update_id = answered["rebuttals"][0]["update_id"]
        await ok(await client.delete(f"/api/v1/updates/{update_id}", headers=auth(officer)))
        await ok(await client.post(f"/api/v1/rumours/{rumour['id']}/rebuttals", json={
            "verdict": "false", "text": "Still no snipers."}, headers=auth(officer)), 201)
        # A report counted after publication gets the answer at once.
        late = await report(client, "I heard about roof snipers", "late@example.org")
        await count(client, officer, rumour["id"], late)
        await wait_for(lambda: _async(len(box.messages) == 3))
        await asyncio.sleep(0.3)
        assert len(box.messages) == 3 and box.messages[-1][0] == ["late@example.org"]
        assert "Still no snipers." in body_of(box.messages[-1][1], "plain")


def body_of(msg: EmailMessage, subtype: str) -> str:
    part = msg.get_body(preferencelist=(subtype,))
    assert part is not None and part.get_content_type() == f"text/{subtype}", subtype
    content: str = part.get_content()  # type: ignore[attr-defined]
    return content


class Page(HTMLParser):
    """The HTML part as a mail reader renders it: its text, its links and which tags it uses."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.links: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.links += [v for k, v in attrs if k == "href" and v]

    def handle_data(self, data: str) -> None:
        self.text.append(data)


async def _async(value: Any) -> Any:
    return value


async def _sent(client: TestClient, token: str, report_id: str) -> Json | None:
    reply = await reply_of(client, token, report_id)
    return reply if reply is not None and reply["status"] == "sent" else None


async def _settled(client: TestClient, token: str, report_id: str) -> Json | None:
    reply = await reply_of(client, token, report_id)
    return reply if reply is not None and reply["status"] in ("sent", "failed") else None


@pytest.mark.parametrize("server", ["refusing", "down"])
async def test_a_refusing_or_absent_server_is_retried_then_failed_and_the_verdict_is_on_time(
        tmp_path: Path, server: str) -> None:
    box = Inbox(refuse=True)
    port = free_port()
    controller = await smtp_server(box, port) if server == "refusing" else None
    try:
        # A retry window of 3 s instead of an hour: the same backoff, scaled down.
        async with TestClient(TestServer(create_app(settings_for(tmp_path, port, retry_minutes=0.05)))) as client:
            tokens, rumour = await setup_event(client)
            rep = await report(client, "snipers on the roofs", "jo@example.org")
            await count(client, tokens["officer"], rumour["id"], rep)
            started = time.monotonic()
            await ok(await client.post(f"/api/v1/rumours/{rumour['id']}/rebuttals", json={
                "verdict": "false", "text": "No snipers."}, headers=auth(tokens["officer"])), 201)
            assert time.monotonic() - started < 2.0
            assert (await ok(await client.get(f"/api/v1/rumours/{rumour['id']}")))["status"] == "false"
            pending = await reply_of(client, tokens["control"], rep)
            assert pending is not None and pending["status"] == "pending"
            reply = await wait_for(lambda: _settled(client, tokens["control"], rep), within=20)
            assert reply["status"] == "failed", reply
            if server == "refusing":
                assert "554" in reply["error"] and "Relaying refused" in reply["error"]
                assert box.attempts >= 3, box.attempts  # retried, with backoff, within the window
            else:
                assert "Connect" in reply["error"] or "refused" in reply["error"].lower(), reply["error"]
    finally:
        if controller is not None:
            await asyncio.to_thread(controller.stop)


async def test_without_smtp_url_the_reply_is_not_configured(tmp_path: Path) -> None:
    async with TestClient(TestServer(create_app(settings_for(tmp_path, None)))) as client:
        tokens, rumour = await setup_event(client)
        rep = await report(client, "snipers on the roofs", "jo@example.org")
        await count(client, tokens["officer"], rumour["id"], rep)
        await ok(await client.post(f"/api/v1/rumours/{rumour['id']}/rebuttals", json={
            "verdict": "unproven", "text": "We are checking."}, headers=auth(tokens["officer"])), 201)
        reply = await reply_of(client, tokens["control"], rep)
        assert reply is not None and reply["status"] == "not-configured"


async def test_a_message_waiting_when_the_server_stops_is_sent_after_it_starts(tmp_path: Path) -> None:
    port = free_port()  # nothing listens yet: the first attempts fail and the message waits
    async with TestClient(TestServer(create_app(settings_for(tmp_path, port)))) as client:
        tokens, rumour = await setup_event(client)
        rep = await report(client, "snipers on the roofs", "jo@example.org")
        await count(client, tokens["officer"], rumour["id"], rep)
        await ok(await client.post(f"/api/v1/rumours/{rumour['id']}/rebuttals", json={
            "verdict": "misleading", "text": "Officers on a roof, yes; snipers, no."},
            headers=auth(tokens["officer"])), 201)

        async def tried() -> bool:
            reply = await reply_of(client, tokens["control"], rep)
            return reply is not None and reply["status"] == "pending" and reply.get("error") is not None

        await wait_for(tried)
        control = tokens["control"]
    box = Inbox()
    controller = await smtp_server(box, port)
    try:
        async with TestClient(TestServer(create_app(settings_for(tmp_path, port)))) as client:
            await wait_for(lambda: _async(len(box.messages) == 1))
            reply = await wait_for(lambda: _sent(client, control, rep))
            assert reply["status"] == "sent"
            rcpts, msg = box.messages[0]
            assert rcpts == ["jo@example.org"] and msg["Subject"] == f"MISLEADING: {CLAIM}"
            assert "Officers on a roof, yes; snipers, no." in body_of(msg, "plain")
    finally:
        await asyncio.to_thread(controller.stop)


@pytest.mark.parametrize("handing", [False, True])
async def test_a_claim_left_by_a_crash_is_sent_if_never_handed_over_and_failed_if_it_was(
        tmp_path: Path, handing: bool) -> None:
    """The embedded store: a message found claimed when the server starts was being sent when the last one
    died. Claimed but not yet handed to the SMTP server: nothing left, so it is sent now (once). Being handed
    over: the server may have it, so it is failed and never sent again."""
    port = free_port()  # nothing listens yet: the message stays pending
    async with TestClient(TestServer(create_app(settings_for(tmp_path, port)))) as client:
        tokens, rumour = await setup_event(client)
        rep = await report(client, "snipers on the roofs", "jo@example.org")
        await count(client, tokens["officer"], rumour["id"], rep)
        await ok(await client.post(f"/api/v1/rumours/{rumour['id']}/rebuttals", json={
            "verdict": "false", "text": "No snipers."}, headers=auth(tokens["officer"])), 201)

        async def tried() -> bool:
            reply = await reply_of(client, tokens["control"], rep)
            return reply is not None and reply.get("error") is not None

        await wait_for(tried)  # the next try is 10 s away: time to leave a claim as a crash would
        store = client.app[SERVICES].store
        doc = store.get("mail", f"{rep}:{rumour['id']}")
        assert doc is not None and doc["status"] == "pending" and not doc["in_flight"]
        await store.append("mail", "mail", {**doc, "in_flight": True, "handing": handing, "claimed_by": "gone/1",
                                            "lease_until": time.time() + 3600, "attempts": doc["attempts"] + 1})
        control = tokens["control"]
    box = Inbox()
    controller = await smtp_server(box, port)
    try:
        async with TestClient(TestServer(create_app(settings_for(tmp_path, port)))) as client:
            reply = await wait_for(lambda: _settled(client, control, rep))
            await asyncio.sleep(0.5)
            if handing:
                assert reply["status"] == "failed" and "not sent again" in reply["error"], reply
                assert box.messages == [] and box.attempts == 0
            else:
                assert reply["status"] == "sent", reply
                assert [rcpts for rcpts, _ in box.messages] == [["jo@example.org"]]
    finally:
        await asyncio.to_thread(controller.stop)
