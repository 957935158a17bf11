"""The rumour and report operations over a real context and store, without HTTP: validation, the stored changes,
unlinking on retraction, urgency at read time, the public board and report matching."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from fieldcomms.config import Settings
from fieldcomms.domain import reports
from fieldcomms.domain import rumours as domain
from fieldcomms.domain.events import create_event
from fieldcomms.domain.updates import build_update, retract, store_update
from fieldcomms.errors import Conflict, NotFound, ValidationFailed
from fieldcomms.model import validate_update
from fieldcomms.rumours.matching import DEFAULT_THRESHOLD
from fieldcomms.services import Services
from fieldcomms.store import Change, Store
from fieldcomms.visibility import Viewer

TAG = "libdempolicing"
OFFICER = Viewer(id="usr_officer", callsign="Bravo 2", role="officer")
CONTROL = Viewer(id="usr_control", callsign="Control", role="control")
SNIPERS = "Police snipers on the roofs"
KETTLE = "The demonstration area is a kettle"
FLARES = "Protesters are planning to set off flares on Fargate"

Doc = dict[str, Any]


@pytest.fixture
async def ctx(tmp_path: Path) -> AsyncIterator[Services]:
    settings = Settings(data_dir=str(tmp_path), fsync=False, demo_admin=False, base_url="https://police.example")
    store = Store(settings.data_path, fsync=False)
    context = Services(settings, store)
    await store.open()
    await create_event(context, {"tag": TAG, "title": "Conference", "status": "live"})
    yield context
    await store.close()


def errors(exc: pytest.ExceptionInfo[ValidationFailed]) -> set[str]:
    return {e["field"] for e in exc.value.errors}


async def log(ctx: Services, claim: str, **inp: Any) -> Doc:
    body = domain.validate_rumour_create({"claim": claim, **inp}, 2000)
    return await domain.create_rumour(ctx, TAG, OFFICER, body, None)


async def public_update(ctx: Services, text: str, visibility: str = "public") -> Doc:
    event = ctx.store.get("events", TAG)
    assert event is not None
    doc = build_update(ctx, event, OFFICER, validate_update({"text": text, "visibility": visibility}))
    return await store_update(ctx, doc, OFFICER, None)


async def rebut(ctx: Services, rumour_id: str, verdict: str, update_id: str) -> Doc:
    inp = domain.validate_rebuttal({"verdict": verdict, "update_id": update_id}, 2000, 4)
    return await domain.add_rebuttal(ctx, rumour_id, OFFICER, inp, None)


def ago(minutes: float) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- validation ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["https://x.example/a?b=c", "http://x.example", "HTTPS://X.EXAMPLE/"])
def test_http_urls_are_accepted(url: str) -> None:
    assert domain.validate_sighting({"url": url}, 2000)["url"] == url


@pytest.mark.parametrize("url", ["ftp://x.example", "javascript:alert(1)", "//x.example/a", "https://", "x",
                                 "https://x.example/a b", "https://x.example/\nb", "", 5, "https://" + "a" * 2000])
def test_other_urls_are_refused(url: Any) -> None:
    with pytest.raises(ValidationFailed) as exc:
        domain.validate_sighting({"url": url}, 2000)
    assert errors(exc) == {"url"}


def test_a_sighting_is_a_report_or_details_never_both() -> None:
    assert domain.validate_sighting({"report_id": "rep_1"}, 2000) == {"report_id": "rep_1"}
    assert domain.validate_sighting({}, 2000) == {"text": None, "url": None, "seen_at": None, "location": None}
    with pytest.raises(ValidationFailed) as exc:
        domain.validate_sighting({"report_id": "rep_1", "url": "https://x.example", "seen_at": ago(1)}, 2000)
    assert errors(exc) == {"url", "seen_at"}
    with pytest.raises(ValidationFailed) as exc:
        domain.validate_sighting(["text"], 2000)
    assert errors(exc) == {"body"}


def test_rebuttal_forms() -> None:
    first = domain.validate_rebuttal({"verdict": "false", "update_id": "upd_1"}, 2000, 4)
    no_checks = {"names_person": False, "mentions_minor": False, "active_proceedings": False}
    assert first == {"verdict": "false", "update_id": "upd_1", "update": None, "checks": no_checks}
    flagged = domain.validate_rebuttal({"verdict": "false", "update_id": "u", "checks": {"mentions_minor": True}},
                                       2000, 4)
    assert flagged["checks"] == {**no_checks, "mentions_minor": True}
    with pytest.raises(ValidationFailed) as exc:
        domain.validate_rebuttal({"verdict": "false", "text": "x", "checks": {"names_person": "yes", "x": True}},
                                 2000, 4)
    assert errors(exc) == {"checks.names_person", "checks.x"}
    second = domain.validate_rebuttal({"verdict": "true", "text": " Yes ", "photos": ["p"]}, 2000, 4)
    assert second["update"] == {"text": " Yes ", "photos": ["p"], "visibility": "public", "kind": "info"}
    with pytest.raises(ValidationFailed) as exc:
        domain.validate_rebuttal({"verdict": "false", "text": "x", "visibility": "internal"}, 2000, 4)
    assert errors(exc) == {"visibility"}  # the second form is always public
    with pytest.raises(ValidationFailed) as exc:
        domain.validate_rebuttal({"verdict": "false", "text": "x", "photos": ["a"] * 5}, 2000, 4)
    assert errors(exc) == {"photos"}
    with pytest.raises(ValidationFailed) as exc:
        domain.validate_rebuttal({"verdict": None, "update_id": 3}, 2000, 4)
    assert errors(exc) == {"verdict", "update_id"}


def test_status_patch_and_report_validation() -> None:
    assert domain.validate_status_patch({"status": "investigating"}) == "investigating"
    with pytest.raises(ValidationFailed) as exc:
        domain.validate_status_patch({})
    assert errors(exc) == {"status"}
    assert reports.validate_report({"text": "flares!", "contact": "  "}, 2000)["contact"] is None
    assert reports.validate_report({"text": "flares!", "contact": " jo@example.org "}, 2000)["contact"] == \
        "jo@example.org"
    for bad in ("jo", "07700 900123", "jo@localhost", "jo @example.org", "a@b@example.org", "jo..x@example.org"):
        with pytest.raises(ValidationFailed) as exc:
            reports.validate_report({"text": "flares!", "contact": bad}, 2000)
        assert errors(exc) == {"contact"}, bad


# --- operations ------------------------------------------------------------------------------------------------


async def test_every_rumour_change_is_stored_as_a_rumour_change_with_its_seq(ctx: Services) -> None:
    changes: list[Change] = []
    ctx.store.add_listener(changes.append)
    rumour = await log(ctx, SNIPERS, location={"lat": 53.38, "lon": -1.47})
    await domain.add_sighting(ctx, rumour["id"], OFFICER, domain.validate_sighting({}, 2000), None)
    update = await public_update(ctx, "Spotters, not snipers")
    await rebut(ctx, rumour["id"], "false", update["id"])
    await domain.set_status(ctx, rumour["id"], CONTROL, "investigating")
    kinds = [(c.type, c.coll) for c in changes]
    assert kinds == [("rumour", "rumours"), ("rumour", "rumours"), ("update", "updates"), ("rumour", "rumours"),
                     ("rumour", "rumours")]
    seqs = [c.seq for c in changes]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    stored = ctx.store.get("rumours", rumour["id"])
    assert stored is not None and stored["seq"] == seqs[-1] and len(stored["_sighting_times"]) == 2
    # The private bookkeeping is never shown, not even to control.
    assert "_sighting_times" not in (domain.render(ctx, stored, CONTROL) or {})


async def test_counting_a_report_writes_the_rumour_and_the_report_in_one_change(ctx: Services) -> None:
    rumour = await log(ctx, FLARES)
    sent = await reports.create_report(ctx, TAG, reports.validate_report({"text": "flares on fargate!!"}, 2000), None)
    changes: list[Change] = []
    ctx.store.add_listener(changes.append)
    counted = await domain.add_sighting(ctx, rumour["id"], OFFICER, {"report_id": sent["id"]}, None)
    assert counted["sightings"] == 2
    report = ctx.store.get("reports", sent["id"])
    assert report is not None and report["counted_for"] == [rumour["id"]]
    assert [c.coll for c in changes] == ["rumours"] and report["seq"] == changes[0].seq
    with pytest.raises(Conflict):
        await domain.add_sighting(ctx, rumour["id"], OFFICER, {"report_id": sent["id"]}, None)


async def test_unlinking_a_retracted_update_touches_only_the_rumours_that_cite_it(ctx: Services) -> None:
    cited = await log(ctx, SNIPERS)
    other = await log(ctx, KETTLE)
    update = await public_update(ctx, "Spotters, not snipers")
    other_update = await public_update(ctx, "It is a safe area")
    await rebut(ctx, cited["id"], "false", update["id"])
    await rebut(ctx, other["id"], "misleading", other_update["id"])
    other_seq = (ctx.store.get("rumours", other["id"]) or {})["seq"]
    ctx.after_retract.append(lambda doc, by: domain.unlink_retracted(ctx, doc, by))
    await retract(ctx, update["id"], CONTROL)
    after = ctx.store.get("rumours", cited["id"]) or {}
    assert after["status"] == "investigating" and after["rebuttals"] == []
    assert after["history"][-1]["by"] == {"id": CONTROL.id, "callsign": CONTROL.callsign}
    assert (ctx.store.get("rumours", other["id"]) or {})["seq"] == other_seq


async def test_rebuttal_refusals_leave_the_rumour_untouched(ctx: Services) -> None:
    rumour = await log(ctx, SNIPERS)
    internal = await public_update(ctx, "roof check", visibility="internal")
    with pytest.raises(ValidationFailed) as exc:
        await rebut(ctx, rumour["id"], "false", internal["id"])
    assert errors(exc) == {"update_id"}
    assert (ctx.store.get("rumours", rumour["id"]) or {})["seq"] == rumour["seq"]
    with pytest.raises(NotFound):
        await rebut(ctx, "rum_nope", "false", internal["id"])


async def test_urgency_is_computed_at_read_time(ctx: Services) -> None:
    old = await log(ctx, KETTLE, source={"seen_at": ago(30)})
    new = await log(ctx, SNIPERS)
    now = datetime.now(UTC)
    listed = domain.list_rumours(ctx, TAG, OFFICER, now=now)["items"]
    assert [r["id"] for r in listed] == [new["id"], old["id"]]
    later = domain.list_rumours(ctx, TAG, OFFICER, now=now + timedelta(minutes=60))["items"]
    by_id = {r["id"]: r for r in later}
    # 60 minutes on, each sighting counts a quarter and the older one an eighth, at the unverified factor 1.2.
    assert by_id[new["id"]]["urgency"] == pytest.approx(1.2 * 0.25, abs=0.01)
    assert by_id[old["id"]]["urgency"] == pytest.approx(1.2 * 0.125, abs=0.01)
    assert by_id[old["id"]]["sightings_last_hour"] == 0
    single = domain.render(ctx, ctx.store.get("rumours", new["id"]), OFFICER, now + timedelta(minutes=60)) or {}
    assert single["urgency"] == by_id[new["id"]]["urgency"]


async def test_a_published_verdict_sinks_down_the_queue(ctx: Services) -> None:
    answered = await log(ctx, SNIPERS)
    await log(ctx, KETTLE, source={"seen_at": ago(45)})
    update = await public_update(ctx, "Spotters")
    await rebut(ctx, answered["id"], "false", update["id"])
    listed = domain.list_rumours(ctx, TAG, OFFICER)["items"]
    assert listed[-1]["id"] == answered["id"]


async def test_the_public_board_is_newest_answer_first_with_claim_reviews(ctx: Services) -> None:
    snipers = await log(ctx, SNIPERS)
    kettle = await log(ctx, KETTLE)
    await log(ctx, FLARES)  # never answered: not on the board
    u1 = await public_update(ctx, "Spotters, not snipers")
    u2 = await public_update(ctx, "A safe area for demonstrating")
    await rebut(ctx, snipers["id"], "false", u1["id"])
    await rebut(ctx, kettle["id"], "misleading", u2["id"])
    board = domain.public_board(ctx, TAG)
    assert [entry["rumour"]["id"] for entry in board] == [kettle["id"], snipers["id"]]
    for entry in board:
        assert "sources" not in entry["rumour"]
        assert entry["rebuttal_update"]["id"] == entry["rumour"]["rebuttals"][-1]["update_id"]
        review = entry["claim_review"]
        assert review["@id"] == f"https://police.example/events/{TAG}/rumours#rumour-{entry['rumour']['id']}"
        assert review["author"] == {"@type": "Organization", "name": ctx.settings.organisation}
        assert review["url"].startswith(f"https://police.example/events/{TAG}#update-")
        assert review["reviewBody"] == entry["rebuttal_update"]["text"]
    with pytest.raises(NotFound):
        domain.public_board(ctx, "nosuchevent")


async def test_reports_list_matches_with_the_configured_threshold(ctx: Services, tmp_path: Path) -> None:
    flares = await log(ctx, FLARES)
    await reports.create_report(ctx, TAG, {"text": "flares on fargate tonight", "location": None, "contact": None},
                               None)
    [item] = (await reports.list_reports(ctx, TAG, OFFICER))["items"]
    assert [m["rumour_id"] for m in item["matches"]] == [flares["id"]]
    assert ctx.matcher.threshold == DEFAULT_THRESHOLD
    # The configured threshold reaches the matcher that Services builds.
    strict = Services(ctx.settings.replace(match_threshold=1.0), Store(tmp_path / "strict", fsync=False))
    assert strict.matcher.threshold == 1.0
    ctx.matcher = strict.matcher
    assert (await reports.list_reports(ctx, TAG, OFFICER))["items"][0]["matches"] == []
    assert (await reports.list_reports(ctx, TAG, None))["items"] == []  # the public never sees a report
