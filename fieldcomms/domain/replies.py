"""Answers sent back to the people who reported a rumour (API.md "Answers sent back to the people who reported").

When a verdict is published, each report counted as a sighting of that rumour whose `contact` is an e-mail
address gets one message. The message is written here, in full, as a document of the "mail" collection
(id `<report id>:<rumour id>`, so a report gets at most one per rumour whatever happens afterwards), stored in
the same journal record as the published rumour: the verdict waits for nothing, and a message queued when the
server stops is still there when it starts. `fieldcomms.mail.Outbox` sends what is pending.

A mail document: `{"id", "event", "report_id", "rumour_id", "to", "subject", "body", "html", "status", "at",
"created_at", "attempts", "next_at", "in_flight", "handing", "claimed_by", "lease_until", "error"}` (the last
four: how `fieldcomms.mail.Outbox` claims it while sending; `html`: the body's HTML alternative); `status` is
`pending`, `sent`, `failed` or `not-configured` (no `smtp_url`: nothing is sent, and control can see that it was not).
"""

from __future__ import annotations

import html
import re
import textwrap
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..model import now_str

if TYPE_CHECKING:
    from ..services import Services

Doc = dict[str, Any]
MAIL = "mail"

# A pragmatic address check, for a contact typed on a phone: something@domain.tld, no spaces, no brackets.
# Deliverability is the SMTP server's business; this only keeps phone numbers and names out of To:.
EMAIL_RE = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                      r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$")

BOARD_LINE = "The answer, with its evidence, and every other rumour we have answered for this event:"
THANKS = ("Thank you for telling us. This message was sent automatically, once, because you left this address "
          "with your report; we use it for nothing else, and replies to it are not read.")

VERDICT_WORDS = {
    "false": "this claim is false",
    "misleading": "this claim is misleading",
    "true": "this claim is true",
    "unproven": "this claim is unproven: we cannot confirm or rule it out yet",
}


def is_email(value: str) -> bool:
    return len(value) <= 254 and EMAIL_RE.match(value) is not None and ".." not in value.split("@")[0]


def mail_id(report_id: str, rumour_id: str) -> str:
    return f"{report_id}:{rumour_id}"


def message(ctx: Services, rumour: Doc, answer_text: str) -> tuple[str, str, str]:
    """The subject, the plain-text body and its HTML alternative: plain English, the verdict, the answer, the
    link to the board. Every piece of text in the HTML is escaped (an answer may well contain `<` or `&`)."""
    verdict = rumour["status"]
    claim = " ".join(rumour["claim"].split())
    short = claim if len(claim) <= 120 else claim[:117].rstrip() + "..."
    subject = f"{verdict.upper()}: {short}"
    board = f"{ctx.settings.public_base_url}/events/{rumour['event']}/rumours#rumour-{rumour['id']}"
    organisation = ctx.settings.organisation
    in_short = VERDICT_WORDS.get(verdict) or str(verdict)
    quoted = textwrap.fill(claim, 72, initial_indent="  \u201c", subsequent_indent="   ") + "\u201d"
    paragraphs = [p.strip() for p in answer_text.splitlines() if p.strip()]
    answer = "\n".join(textwrap.fill(p, 72) for p in paragraphs)
    body = (
        f"Hello,\n\n"
        f"You told {organisation} about this claim (#{rumour['event']}):\n\n{quoted}\n\n"
        f"Our answer: {verdict.upper()}. In short, {in_short}.\n\n"
        f"{answer}\n\n"
        f"{BOARD_LINE}\n{board}\n\n"
        f"{THANKS}\n\n"
        f"{organisation}\n"
    )
    e = html.escape
    answer_html = "\n".join(f"<p>{e(p)}</p>" for p in paragraphs)
    page = (
        f'<!DOCTYPE html>\n<html lang="en">\n<head><meta charset="utf-8"><title>{e(subject)}</title></head>\n'
        f'<body style="font-family: sans-serif; font-size: 16px; line-height: 1.5; max-width: 40em">\n'
        f"<p>Hello,</p>\n"
        f"<p>You told {e(organisation)} about this claim (#{e(rumour['event'])}):</p>\n"
        f"<blockquote>\u201c{e(claim)}\u201d</blockquote>\n"
        f"<p><strong>Our answer: {e(verdict.upper())}.</strong> In short, {e(in_short)}.</p>\n"
        f"{answer_html}\n"
        f'<p>{e(BOARD_LINE)}<br>\n<a href="{e(board)}">{e(board)}</a></p>\n'
        f"<p>{e(THANKS)}</p>\n"
        f"<p>{e(organisation)}</p>\n"
        f"</body>\n</html>\n"
    )
    return subject, body, page


def mail_docs(ctx: Services, rumour: Doc, reports: Iterable[Doc]) -> list[tuple[str, Doc]]:
    """The messages to queue now that `rumour`'s verdict is published: one per counted report with an e-mail
    contact that has had none for this rumour. Returned as (collection, doc) for Store.append's `aux`."""
    rebuttals = rumour.get("rebuttals") or []
    if not rebuttals:
        return []
    update = ctx.store.get("updates", rebuttals[-1]["update_id"]) or {}
    subject, body, page = message(ctx, rumour, str(update.get("text") or ""))
    configured = bool(ctx.settings.smtp_url)
    docs: list[tuple[str, Doc]] = []
    for report in reports:
        contact = (report.get("contact") or "").strip()
        key = mail_id(report["id"], rumour["id"])
        if not contact or not is_email(contact) or ctx.store.get(MAIL, key) is not None:
            continue
        docs.append((MAIL, {
            "id": key, "event": rumour["event"], "report_id": report["id"], "rumour_id": rumour["id"],
            "to": contact, "subject": subject, "body": body, "html": page,
            "status": "pending" if configured else "not-configured", "at": now_str(), "created_at": time.time(),
            "attempts": 0, "next_at": 0.0, "in_flight": False, "error": None,
        }))
    return docs
