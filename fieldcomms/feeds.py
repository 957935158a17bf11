"""Atom feeds and OASIS CAP 1.2 alerts for the public.

Pure functions: they take items already passed through ``visibility.view`` for the public and return
bytes. Each still refuses anything not public and active, because a leak here reaches every feed reader
and alert aggregator that polls us, and cannot be recalled.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urljoin

from feedgen.ext.base import BaseEntryExtension, BaseExtension
from feedgen.feed import FeedGenerator
from lxml import etree

__all__ = ["CAP_NS", "atom_feed", "cap_alert", "cap_cancel", "cap_expires", "cap_index_atom", "cap_time"]

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"
CAP_CONTENT_TYPE = "application/cap+xml"

_TITLE_CHARS = 80
_TITLE_PREFIX = {"warning": "Warning: ", "alert": "Alert: "}
# CAP 1.2 s3.2.1: identifier and sender "MUST NOT include spaces, commas or restricted characters (< and &)".
_CAP_FORBIDDEN = re.compile(r"[\s,<&]")
# Characters XML 1.0 cannot carry at all; lxml raises on them, and a handset can send them.
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _clean(text: str) -> str:
    return _XML_ILLEGAL.sub("", text)


def _parse_time(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise ValueError(f"time without an offset: {value!r}")
    return moment.astimezone(UTC)


def cap_time(rfc3339: str) -> str:
    """An RFC 3339 time as CAP 1.2's dateTime: whole seconds, UTC, written ``-00:00``.

    The XSD accepts ``+00:00`` too, but the spec's prose (s3.2.1 ``sent``) says "Alphabetic timezone
    designators such as "Z" MUST NOT be used. The timezone for UTC MUST be represented as "-00:00"",
    and strict consumers follow the prose.
    """
    return _parse_time(rfc3339).strftime("%Y-%m-%dT%H:%M:%S") + "-00:00"


def _entry_time(item: Mapping[str, Any]) -> str:
    """When a feed entry last changed: a cancellation's when the warning was withdrawn."""
    if _is_cancellation(item):
        return str(item.get("retracted_at") or item["received_at"])
    return str(item["received_at"])


def _require_public(update: Mapping[str, Any]) -> None:
    if update.get("visibility") != "public" or update.get("status") != "active":
        raise ValueError(f"update {update.get('id')!r} is not public and active; refusing to publish it")


def _absolute(base_url: str, url: str) -> str:
    return urljoin(base_url + "/", url)


def _title(update: Mapping[str, Any]) -> str:
    text = " ".join(_clean(update["text"]).split())
    if len(text) > _TITLE_CHARS:
        cut = text[:_TITLE_CHARS].rsplit(" ", 1)[0] or text[:_TITLE_CHARS]
        text = cut.rstrip(" ,;:.") + "…"
    return _TITLE_PREFIX.get(update.get("kind", ""), "") + (text or "Update")


def _coord(value: float) -> str:
    # Fixed notation: str() would write 1e-05, which no CAP or GeoRSS reader parses. Adding 0.0 turns -0.0
    # into 0.0 so the equator is not written "-0".
    text = f"{round(float(value), 6) + 0.0:.6f}".rstrip("0").rstrip(".")
    return text or "0"


class _EntryLinks(BaseEntryExtension):
    """Entry links written by us: feedgen 1.0's FeedEntry.link drops every attribute but href
    (lkiesow/python-feedgen#135), which would leave enclosures and typed alternates as bare links."""

    def __init__(self) -> None:
        self.links: list[dict[str, str]] = []

    def add(self, **attributes: str) -> None:
        self.links.append(attributes)

    def extend_atom(self, entry: etree._Element) -> etree._Element:
        # Unqualified like feedgen's own elements: its root declares Atom as the default namespace.
        for attributes in self.links:
            etree.SubElement(entry, "link", attributes)
        return entry


def _new_feed(event: Mapping[str, Any], *, feed_id: str, title: str, self_url: str, base_url: str,
              organisation: str, items: Iterable[Mapping[str, Any]]) -> FeedGenerator:
    feed = FeedGenerator()
    feed.register_extension("fclinks", BaseExtension, _EntryLinks, atom=True, rss=False)
    feed.id(feed_id)
    feed.title(_clean(title))
    feed.author({"name": _clean(organisation)})
    feed.link(href=self_url, rel="self", type="application/atom+xml")
    feed.link(href=f"{base_url}/events/{event['tag']}", rel="alternate", type="text/html")
    if event.get("description"):
        feed.subtitle(_clean(event["description"]))
    feed.language("en-GB")
    feed.generator("fieldcomms")
    # max() rather than the first item: "newest first" is the caller's promise, the feed's updated must hold
    # whatever order it is given.
    times = [_parse_time(event["created_at"])] + [_parse_time(_entry_time(item)) for item in items]
    feed.updated(max(times))
    return feed


def atom_feed(event: Mapping[str, Any], updates: list[dict[str, Any]], *, base_url: str,
              organisation: str) -> bytes:
    """Atom 1.0 (RFC 4287) of an event's public updates, in the order given (newest first).

    Every entry's author is the organisation, not the officer's callsign: the public page speaks for the
    force, and callsigns on a public feed would help someone track named officers across an operation.
    Photos are ``rel=enclosure`` links so the content stays plain text, with nothing for a reader to sanitise.
    """
    for update in updates:
        _require_public(update)
    tag = event["tag"]
    feed = _new_feed(event, feed_id=f"urn:fieldcomms:event:{tag}", title=event["title"],
                     self_url=f"{base_url}/events/{tag}/feed.atom", base_url=base_url,
                     organisation=organisation, items=updates)
    feed.load_extension("geo", atom=True, rss=False)
    for update in updates:
        entry = feed.add_entry(order="append")
        entry.id(f"urn:fieldcomms:update:{update['id']}")
        entry.title(_title(update))
        entry.updated(_parse_time(update["received_at"]))
        entry.published(_parse_time(update["received_at"]))
        entry.author({"name": _clean(organisation)})
        entry.content(_clean(update["text"]), type="text")
        entry.fclinks.add(href=f"{base_url}/api/v1/updates/{update['id']}", rel="alternate",
                          type="application/json")
        for photo in update.get("photos") or []:
            # The public photo shape has no content type; media re-encodes to JPEG unless it says otherwise.
            entry.fclinks.add(href=_absolute(base_url, photo["url"]), rel="enclosure",
                              type=photo.get("content_type", "image/jpeg"))
        entry.category(term=update.get("kind", "info"))
        for hashtag in update.get("hashtags") or []:
            entry.category(term=hashtag, scheme="urn:fieldcomms:hashtag")
        location = update.get("location")
        if location:
            entry.geo.point(f"{_coord(location['lat'])} {_coord(location['lon'])}")
    return bytes(feed.atom_str(pretty=True))


def cap_index_atom(event: Mapping[str, Any], warnings: list[dict[str, Any]], *, base_url: str,
                   organisation: str) -> bytes:
    """Atom index of the event's CAP messages, each entry linking to its ``application/cap+xml`` document.

    `warnings` holds public, active warnings and cancellations (``visibility.cap_cancellation``: a public
    warning since retracted), newest first. A cancellation is an entry of its own (id ``...:cancel``, updated
    when the warning was withdrawn) linking to the same CAP URL, which now answers the ``Cancel`` message, so
    an aggregator that relayed the warning learns to withdraw it; it carries no text of the warning. Items
    that would get no CAP document are skipped rather than listed with a link that answers 404.
    """
    warnings = [w for w in warnings if _is_cap_eligible(w) or _is_cancellation(w)]
    tag = event["tag"]
    feed = _new_feed(event, feed_id=f"urn:fieldcomms:event:{tag}:alerts",
                     title=f"{event['title']}: public safety alerts",
                     self_url=f"{base_url}/events/{tag}/alerts.atom", base_url=base_url,
                     organisation=organisation, items=warnings)
    for update in warnings:
        entry = feed.add_entry(order="append")
        if _is_cancellation(update):
            withdrawn = _parse_time(_entry_time(update))
            entry.id(f"urn:fieldcomms:cap:{update['id']}:cancel")
            entry.title(_cancel_headline(update))
            entry.updated(withdrawn)
            entry.published(withdrawn)
            entry.content(_CANCEL_TEXT, type="text")
            entry.category(term="Cancel", scheme="urn:oasis:names:tc:emergency:cap:1.2:msgType")
        else:
            entry.id(f"urn:fieldcomms:cap:{update['id']}")
            entry.title(_title(update))
            entry.updated(_parse_time(update["received_at"]))
            entry.published(_parse_time(update["received_at"]))
            entry.content(_clean(update["text"]), type="text")
            entry.category(term="Alert", scheme="urn:oasis:names:tc:emergency:cap:1.2:msgType")
        entry.author({"name": _clean(organisation)})
        entry.fclinks.add(href=f"{base_url}/api/v1/updates/{update['id']}/cap", rel="alternate",
                          type=CAP_CONTENT_TYPE)
    return bytes(feed.atom_str(pretty=True))


_CANCEL_TEXT = "This warning has been withdrawn by its publisher. Disregard it."


def _cancel_headline(cancellation: Mapping[str, Any]) -> str:
    return f"Cancelled: the warning of {cap_time(cancellation['received_at'])} is withdrawn"


def _is_cancellation(item: Mapping[str, Any]) -> bool:
    return (item.get("kind") == "warning" and item.get("visibility") == "public"
            and item.get("status") == "retracted")


def _is_cap_eligible(update: Mapping[str, Any]) -> bool:
    return (update.get("kind") == "warning" and update.get("visibility") == "public"
            and update.get("status") == "active")


def _cap_safe(value: str, what: str) -> str:
    if not value or _CAP_FORBIDDEN.search(value):
        raise ValueError(f"CAP {what} must be non-empty without spaces, commas, '<' or '&': {value!r}")
    return value


def _cap_rings(geometry: Mapping[str, Any]) -> list[str]:
    """CAP polygons ("lat,lon lat,lon ...", closed, >= 4 pairs) from a GeoJSON Polygon or MultiPolygon.

    Only exterior rings: CAP has no holes, and a warning area drawn a little too wide errs on the safe side.
    Lines and points are skipped; pass their buffered polygon if they should be drawn.
    """
    kind = geometry.get("type")
    if kind == "Polygon":
        polygons = [geometry["coordinates"]]
    elif kind == "MultiPolygon":
        polygons = list(geometry["coordinates"])
    else:
        return []
    rings = []
    for polygon in polygons:
        if not polygon:
            continue
        ring = [(position[1], position[0]) for position in polygon[0]]  # GeoJSON is [lon, lat]
        if ring and ring[0] != ring[-1]:
            ring.append(ring[0])
        if len(ring) >= 4:
            rings.append(" ".join(f"{_coord(lat)},{_coord(lon)}" for lat, lon in ring))
    return rings


def cap_expires(sent: str, event: Mapping[str, Any], expires_hours: float) -> str:
    """CAP ``<expires>``: the event's ``ends_at`` when it lies after ``sent``, else ``sent`` plus
    ``expires_hours`` (the setting ``cap_expires_hours``). Every alert carries one, so an aggregator never
    keeps a warning up for ever after the event has been forgotten."""
    sent_at = _parse_time(sent)
    ends_at = event.get("ends_at")
    if ends_at and _parse_time(ends_at) > sent_at:
        return cap_time(ends_at)
    return cap_time((sent_at + timedelta(hours=expires_hours)).isoformat())


def cap_alert(update: Mapping[str, Any], event: Mapping[str, Any], *, base_url: str, sender: str,
              organisation: str, radius_km: float = 0.2,
              zone_geometries: Mapping[str, Mapping[str, Any]] | None = None,
              expires_hours: float = 6.0) -> bytes:
    """An OASIS CAP 1.2 alert for one public, active ``warning`` update, as UTF-8 bytes.

    The area is the update's zones (by name, and as polygons where ``zone_geometries`` maps a zone id to a
    GeoJSON Polygon or MultiPolygon) plus a circle round its location, widened to the location's accuracy.
    An update with neither gets no ``<area>``: CAP makes area optional, and an invented one would mislead.
    ``<expires>`` is ``cap_expires``.
    """
    _require_public(update)
    if update.get("kind") != "warning":
        raise ValueError(f"update {update.get('id')!r} is not a warning; only warnings are published as CAP")
    sent = cap_time(update["received_at"])

    alert = etree.Element(f"{{{CAP_NS}}}alert", nsmap={None: CAP_NS})

    def add(parent: etree._Element, name: str, text: str) -> etree._Element:
        element = etree.SubElement(parent, f"{{{CAP_NS}}}{name}")
        element.text = _clean(text)
        return element

    # Order matters: the XSD is a strict xs:sequence.
    add(alert, "identifier", _cap_safe(f"fieldcomms-{update['id']}", "identifier"))
    add(alert, "sender", _cap_safe(sender, "sender"))
    add(alert, "sent", sent)
    add(alert, "status", "Actual")
    add(alert, "msgType", "Alert")
    add(alert, "scope", "Public")

    info = etree.SubElement(alert, f"{{{CAP_NS}}}info")
    add(info, "language", "en-GB")
    add(info, "category", "Safety")
    add(info, "event", event["title"])
    # A warning is "a danger to the public" now, at the place given: act on it at once, seen by an officer.
    add(info, "urgency", "Immediate")
    add(info, "severity", "Moderate")
    add(info, "certainty", "Observed")
    add(info, "expires", cap_expires(update["received_at"], event, expires_hours))
    add(info, "senderName", organisation)
    add(info, "headline", _title(update))
    add(info, "description", update["text"])
    add(info, "web", f"{base_url}/events/{event['tag']}")
    for photo in update.get("photos") or []:
        resource = etree.SubElement(info, f"{{{CAP_NS}}}resource")
        add(resource, "resourceDesc", "Photo")
        add(resource, "mimeType", photo.get("content_type", "image/jpeg"))
        add(resource, "uri", _absolute(base_url, photo["url"]))

    location = update.get("location")
    zones = update.get("zones") or []
    if location or zones:
        area = etree.SubElement(info, f"{{{CAP_NS}}}area")
        if zones:
            add(area, "areaDesc", ", ".join(zone["name"] for zone in zones))
        elif location:
            add(area, "areaDesc", f"Near {_coord(location['lat'])}, {_coord(location['lon'])}")
        for zone in zones:
            geometry = (zone_geometries or {}).get(zone["id"])
            for ring in _cap_rings(geometry) if geometry else []:
                add(area, "polygon", ring)
        if location:
            radius = max(radius_km, float(location.get("accuracy_m") or 0) / 1000)
            add(area, "circle", f"{_coord(location['lat'])},{_coord(location['lon'])} {_coord(radius)}")

    return bytes(etree.tostring(alert, xml_declaration=True, encoding="UTF-8", pretty_print=True))


class FeedCache:
    """Rendered feeds by (kind, tag), each valid while `store.last_seq` has not moved."""

    def __init__(self, max_entries: int = 256) -> None:
        self.max_entries = max_entries
        self._entries: dict[tuple[str, str], tuple[int, bytes]] = {}

    def get_or_render(self, key: tuple[str, str], seq: int, render: Callable[[], bytes]) -> bytes:
        hit = self._entries.get(key)
        if hit is not None and hit[0] == seq:
            return hit[1]
        body = render()
        if len(self._entries) >= self.max_entries and key not in self._entries:
            self._entries.pop(next(iter(self._entries)))  # oldest inserted; events are few
        self._entries[key] = (seq, body)
        return body


def cap_cancel(cancellation: Mapping[str, Any], event: Mapping[str, Any], *, base_url: str, sender: str,
               organisation: str, expires_hours: float = 6.0) -> bytes:
    """An OASIS CAP 1.2 ``Cancel`` message for a public warning since retracted (CAP 1.2 s3.2.1 msgType).

    ``cancellation`` is what ``visibility.cap_cancellation`` lets the public know of the withdrawn warning
    (its id, its original ``received_at``, when it was withdrawn): the message says which alert it cancels
    in ``<references>`` (``sender,identifier,sent`` of the original) and carries none of the warning's text,
    place or photos, which left public view with the retraction. It has its own identifier and ``sent``
    (the retraction), and one ``<info>`` so that it states its ``<expires>`` like every alert we publish.
    """
    if not _is_cancellation(cancellation):
        raise ValueError(f"update {cancellation.get('id')!r} is not a retracted public warning")
    original_id = _cap_safe(f"fieldcomms-{cancellation['id']}", "identifier")
    sender = _cap_safe(sender, "sender")
    sent = _entry_time(cancellation)

    alert = etree.Element(f"{{{CAP_NS}}}alert", nsmap={None: CAP_NS})

    def add(parent: etree._Element, name: str, text: str) -> etree._Element:
        element = etree.SubElement(parent, f"{{{CAP_NS}}}{name}")
        element.text = _clean(text)
        return element

    add(alert, "identifier", _cap_safe(f"{original_id}-cancel", "identifier"))
    add(alert, "sender", sender)
    add(alert, "sent", cap_time(sent))
    add(alert, "status", "Actual")
    add(alert, "msgType", "Cancel")
    add(alert, "scope", "Public")
    add(alert, "note", _CANCEL_TEXT)
    add(alert, "references", f"{sender},{original_id},{cap_time(cancellation['received_at'])}")
    info = etree.SubElement(alert, f"{{{CAP_NS}}}info")
    add(info, "language", "en-GB")
    add(info, "category", "Safety")
    add(info, "event", event["title"])
    add(info, "responseType", "None")
    add(info, "urgency", "Past")
    add(info, "severity", "Unknown")
    add(info, "certainty", "Unknown")
    add(info, "expires", cap_expires(sent, event, expires_hours))
    add(info, "senderName", organisation)
    add(info, "headline", _cancel_headline(cancellation))
    add(info, "description", _CANCEL_TEXT)
    add(info, "web", f"{base_url}/events/{event['tag']}")
    return bytes(etree.tostring(alert, xml_declaration=True, encoding="UTF-8", pretty_print=True))
