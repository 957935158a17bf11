"""The evidence bundle: one event as a signed zip, written as a stream.

`write_bundle` walks a loaded store (the server's files, read without the lock) and writes each file into a
zip on a non-seekable output (a pipe to the HTTP response, or a file), piece by piece, hashing as it goes; the
manifest with every file's SHA-256 comes last, signed by the deployment's Ed25519 key. Nothing here holds the
whole bundle or a whole file in memory (an original photo at a time excepted: at most 15 MiB).

Files (API.md, "The evidence bundle"): manifest.json, manifest.sig, signing-key.pub, updates.geojson,
updates.csv, zones.geojson, event.kml, rumours.json, reports.json, alerts.json, positions.csv, decisions.json,
audit.json, photos/<id>.<ext>.

KML is written as escaped text, a placemark at a time, rather than with simplekml or fastkml: both build every
placemark as an object tree first (measured: simplekml took 17.5 s for 20,000 points; the bench exports 100,000
updates), and so, at a fifth of that cost, did lxml's incremental writer. The tests read it back with lxml.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import re
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from xml.sax.saxutils import escape

import orjson

from ..domain.positions import point_out
from ..geo import zone_to_feature
from ..model import now_str
from ..store import Store
from ..store.journal import decode_line, list_segments, open_segment
from ..visibility import Resolver, Viewer, view
from .originals import Originals, extension
from .signing import SigningKey

FORMAT = "fieldcomms-export/1"
KML_NS = "http://www.opengis.net/kml/2.2"
# Who the bundle's contents are seen as: control sees every field of every item (contacts included, until a
# purge erases them), and visibility (the one place that decides) still drops internal bookkeeping.
EXPORTER = Viewer(id="export", callsign="export", role="admin")
PIECE = 256 * 1024

Doc = dict[str, Any]


class NoSuchEvent(Exception):
    pass


@dataclass
class BundleFile:
    path: str
    sha256: str
    bytes: int


@dataclass
class Bundle:
    files: list[BundleFile] = field(default_factory=list)
    manifest: Doc = field(default_factory=dict)
    missing_originals: list[str] = field(default_factory=list)


class _Sink:
    """A write-only, non-seekable file object for zipfile that counts what passes (zipfile needs tell())."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.pos = 0

    def write(self, data: bytes) -> int:
        self.out.write(data)
        self.pos += len(data)
        return len(data)

    def tell(self) -> int:
        return self.pos

    def flush(self) -> None:
        self.out.flush()

    def close(self) -> None:
        pass  # the caller owns `out`


def _event_docs(store: Store, coll: str, tag: str) -> list[Doc]:
    return [doc for doc in store.oldest_first(coll, tag) if doc is not None]


def _seen(store: Store, resolver: Resolver, coll: str, tag: str) -> list[Doc]:
    return [s for doc in _event_docs(store, coll, tag) if (s := view(coll, doc, EXPORTER, resolver)) is not None]


def _json_array(items: Iterable[Any]) -> Iterator[bytes]:
    yield b"[\n"
    first = True
    for item in items:
        yield (b"" if first else b",\n") + orjson.dumps(item)
        first = False
    yield b"\n]\n"


def _geojson(features: Iterable[Doc]) -> Iterator[bytes]:
    yield b'{"type":"FeatureCollection","features":[\n'
    first = True
    for f in features:
        yield (b"" if first else b",\n") + orjson.dumps(f)
        first = False
    yield b"\n]}\n"


def _point(location: Doc | None) -> Doc | None:
    if not location or location.get("lat") is None or location.get("lon") is None:
        return None
    return {"type": "Point", "coordinates": [location["lon"], location["lat"]]}


def _update_features(updates: list[Doc]) -> Iterator[Doc]:
    for u in updates:
        yield {"type": "Feature", "id": u["id"], "geometry": _point(u.get("location")), "properties": u}


UPDATE_COLUMNS = ["id", "seq", "received_at", "captured_at", "author_id", "author_callsign", "kind",
                  "visibility", "status", "lat", "lon", "accuracy_m", "location_source", "text", "photos",
                  "reply_to", "hashtags"]


def _csv(rows: Iterable[list[Any]], header: list[str]) -> Iterator[bytes]:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")  # RFC 4180
    writer.writerow(header)
    for n, row in enumerate(rows, start=1):
        writer.writerow(row)
        if n % 2000 == 0:
            yield buf.getvalue().encode()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue().encode()


def _update_rows(updates: list[Doc]) -> Iterator[list[Any]]:
    for u in updates:
        loc = u.get("location") or {}
        author = u.get("author") or {}
        yield [u["id"], u["seq"], u.get("received_at"), u.get("captured_at"), author.get("id"),
               author.get("callsign"), u.get("kind"), u.get("visibility"), u.get("status"), loc.get("lat"),
               loc.get("lon"), loc.get("accuracy_m"), loc.get("source"), u.get("text"),
               ";".join(p["id"] for p in u.get("photos", ())), u.get("reply_to"),
               ";".join(u.get("hashtags", ()))]


POSITION_COLUMNS = ["officer_id", "officer_callsign", "at", "lat", "lon", "accuracy_m"]


def _journal_lines(data_dir: Path) -> Iterator[bytes]:
    """Every line of every journal segment, oldest first, read beside a running server: a segment that is
    replaced meanwhile (compressed after a snapshot) is looked up again by its first seq."""
    done: set[int] = set()
    misses = 0
    while True:
        pending = [(first, path) for first, path in list_segments(data_dir) if first not in done]
        if not pending:
            return
        first, path = pending[0]
        try:
            f = open_segment(path)
        except FileNotFoundError:
            misses += 1
            if misses > 100:
                raise
            continue  # replaced just now: listed again under its new name
        with f:
            yield from f
        done.add(first)


def recorded_positions(data_dir: Path, store: Store, tag: str) -> list[list[Any]]:
    """Every position recorded for the event that the data directory still holds: every point of every track
    document (`tracks`, domain/positions.py), and each version of each officer's position document in the journal (those
    written before tracks had their own collection carry the newest points of the officer's track). Purged
    events have none: the purge erased them everywhere."""
    seen: set[tuple[Any, ...]] = set()
    rows: list[list[Any]] = []

    def take(doc: Doc) -> None:
        officer = doc.get("officer") or {}
        for point in doc.get("track") or ():
            key = (officer.get("id"), point.get("at"), point.get("lat"), point.get("lon"))
            if key not in seen:
                seen.add(key)
                rows.append([officer.get("id"), officer.get("callsign"), point.get("at"), point.get("lat"),
                             point.get("lon"), point.get("accuracy_m")])

    needle = b'"coll":"positions"'
    event_needle = b'"event":' + orjson.dumps(tag)
    for line in _journal_lines(data_dir):
        # Most lines are not positions of this event: skip them without parsing.
        if needle not in line or event_needle not in line:
            continue
        record = decode_line(line)
        if record is None:
            continue  # a torn tail being written right now
        if record.get("coll") == "positions" and record["data"].get("event") == tag:
            take(record["data"])
    for doc in _event_docs(store, "positions", tag):
        take(doc)
    for doc in _event_docs(store, "tracks", tag):
        if "points" in doc:
            take({"officer": doc.get("officer"), "track": [point_out(p) for p in doc["points"]]})
    rows.sort(key=lambda r: (str(r[2]), str(r[1])))
    return rows


# Characters XML 1.0 does not allow (most C0 controls): an update's text may carry them, a KML file may not.
_NOT_XML = re.compile("[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _x(value: Any) -> str:
    """Text for an XML element or attribute: escaped, and stripped of what XML cannot carry."""
    return escape(_NOT_XML.sub("", str(value)), {'"': "&quot;"})


def _placemark(item_id: str, name: str, description: str, when: str | None, geometry: str) -> str:
    stamp = f"<TimeStamp><when>{_x(when)}</when></TimeStamp>" if when else ""
    return (f'<Placemark id="{_x(item_id)}"><name>{_x(name)}</name><description>{_x(description)}</description>'
            f"{stamp}{geometry}</Placemark>\n")


def _point_kml(loc: Doc) -> str:
    return f"<Point><coordinates>{float(loc['lon'])!r},{float(loc['lat'])!r}</coordinates></Point>"


def _coords(points: Iterable[list[float]]) -> str:
    return " ".join(f"{float(p[0])!r},{float(p[1])!r}" for p in points)


def _zone_kml(geometry: Doc) -> str:
    kind, coords = geometry.get("type"), geometry.get("coordinates") or []
    if kind == "Point":
        return _point_kml({"lon": coords[0], "lat": coords[1]})
    if kind == "LineString":
        return f"<LineString><coordinates>{_coords(coords)}</coordinates></LineString>"
    if kind == "Polygon":
        rings = "".join(
            f"<{'outerBoundaryIs' if k == 0 else 'innerBoundaryIs'}><LinearRing><coordinates>{_coords(ring)}"
            f"</coordinates></LinearRing></{'outerBoundaryIs' if k == 0 else 'innerBoundaryIs'}>"
            for k, ring in enumerate(coords))
        return f"<Polygon>{rings}</Polygon>"
    return ""


def _kml(tag: str, title: str, updates: list[Doc], rumours: list[Doc], zones: list[Doc]) -> Iterator[bytes]:
    """KML 2.2 (OGC 07-147r2): a Document with one Folder each for updates, rumours and zones. Written as
    escaped text, a placemark at a time: building an element tree per placemark (lxml, simplekml) was the
    slowest part of an export (simplekml: 17.5 s for 20,000 points)."""
    yield (f'<?xml version="1.0" encoding="UTF-8"?>\n<kml xmlns="{KML_NS}"><Document>'
           f"<name>{_x('#' + tag + ': ' + title)}</name>\n<Folder><name>Updates</name>\n").encode()
    piece: list[str] = []
    for u in updates:
        loc = u.get("location")
        if not loc:
            continue
        author = (u.get("author") or {}).get("callsign", "")
        piece.append(_placemark(u["id"], f"{author} ({u.get('kind')}, {u.get('visibility')}, {u.get('status')})",
                                u.get("text", ""), u.get("captured_at") or u.get("received_at"), _point_kml(loc)))
        if len(piece) >= 2000:
            yield "".join(piece).encode()
            piece = []
    piece.append("</Folder>\n<Folder><name>Rumours</name>\n")
    for r in rumours:
        if r.get("location"):
            piece.append(_placemark(r["id"], f"Rumour ({r.get('status')})", r.get("claim", ""),
                                    r.get("first_seen_at"), _point_kml(r["location"])))
    piece.append("</Folder>\n<Folder><name>Zones</name>\n")
    for z in zones:
        name = f"{z.get('name', '')} ({z.get('kind', '')}{', deleted' if z.get('deleted') else ''})"
        piece.append(_placemark(z["id"], name, z.get("name", ""), z.get("created_at"), _zone_kml(z.get("geometry") or {})))
    piece.append("</Folder>\n</Document></kml>\n")
    yield "".join(piece).encode()


def photo_ids(updates: list[Doc], reports: list[Doc]) -> list[str]:
    found: dict[str, None] = {}
    for item in (*updates, *reports):
        for photo in item.get("photos") or ():
            photo_id = photo["id"] if isinstance(photo, dict) else photo
            found[str(photo_id)] = None
    return list(found)


def write_bundle(out: IO[bytes], *, data_dir: Path, store: Store, resolver: Resolver, tag: str,
                 reason: str, generated_by: Doc, key: SigningKey,
                 progress: Callable[[str], None] | None = None) -> Bundle:
    """Write the bundle of event `tag` to `out` (any writable binary file object; it need not seek)."""
    event = store.get("events", tag)
    if event is None:
        raise NoSuchEvent(f"no event #{tag}")
    head_seq, head_hash = store.chain_head()
    updates = _seen(store, resolver, "updates", tag)
    reports = _seen(store, resolver, "reports", tag)
    bundle = Bundle()
    originals = Originals(data_dir / "originals")
    # Level 1: a third of level 6's CPU time for a bundle about a fifth larger (GeoJSON and CSV compress well).
    with zipfile.ZipFile(_Sink(out), "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:

        def add(path: str, pieces: Iterable[bytes], *, stored: bool = False) -> None:
            if progress is not None:
                progress(path)
            info = zipfile.ZipInfo(path, date_time=_zip_time())
            info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            digest = hashlib.sha256()
            size = 0
            with zf.open(info, "w", force_zip64=True) as w:
                # Pieces are gathered into writes of PIECE bytes: a write per GeoJSON feature cost more in
                # zipfile's per-call work (CRC, compressor, hash) than the feature itself.
                held: list[bytes] = []
                held_bytes = 0
                for piece in itertools.chain(pieces, (b"",)):
                    held.append(piece)
                    held_bytes += len(piece)
                    if held_bytes >= PIECE or (not piece and held_bytes):
                        data = b"".join(held)
                        w.write(data)
                        digest.update(data)
                        size += len(data)
                        held, held_bytes = [], 0
            bundle.files.append(BundleFile(path, digest.hexdigest(), size))

        add("updates.geojson", _geojson(_update_features(updates)))
        add("updates.csv", _csv(_update_rows(updates), UPDATE_COLUMNS))
        zones = [z for z in _event_docs(store, "zones", tag)]
        add("zones.geojson", _geojson(zone_to_feature(z, {k: v for k, v in z.items()
                                                          if k not in ("id", "geometry") and not k.startswith("_")})
                                      for z in zones))
        rumours = _seen(store, resolver, "rumours", tag)
        add("event.kml", _kml(tag, event.get("title", ""), updates, rumours, zones))
        add("rumours.json", _json_array(rumours))
        add("reports.json", _json_array(reports))
        add("alerts.json", _json_array(_seen(store, resolver, "alerts", tag)))
        add("positions.csv", _csv(recorded_positions(data_dir, store, tag), POSITION_COLUMNS))
        add("decisions.json", _json_array(_seen(store, resolver, "decisions", tag)))
        add("audit.json", _json_array(_seen(store, resolver, "audit", tag)))
        for photo_id in photo_ids(updates, reports):
            photo = store.get("photos", photo_id) or {}
            original = photo.get("original") or {}
            path = originals.open_path(photo_id)
            if path is None:
                bundle.missing_originals.append(photo_id)
                continue
            data = path.read_bytes()
            add(f"photos/{photo_id}.{extension(str(original.get('content_type', '')))}",
                (data[i:i + PIECE] for i in range(0, len(data), PIECE)), stored=True)
        manifest: Doc = {
            "format": FORMAT, "event": tag, "generated_at": now_str(), "generated_by": generated_by,
            "reason": reason, "chain_head": {"seq": head_seq, "hash": head_hash},
            "files": [{"path": f.path, "sha256": f.sha256, "bytes": f.bytes} for f in bundle.files],
        }
        if bundle.missing_originals:
            # Said, not hidden: photos whose originals were purged or were never kept (uploaded before
            # originals were kept).
            manifest["originals_not_included"] = bundle.missing_originals
        raw = orjson.dumps(manifest, option=orjson.OPT_INDENT_2) + b"\n"
        for name, data in (("manifest.json", raw), ("manifest.sig", key.sign(raw)),
                           ("signing-key.pub", key.public_pem())):
            info = zipfile.ZipInfo(name, date_time=_zip_time())
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
        bundle.manifest = manifest
    out.flush()
    return bundle


def _zip_time() -> tuple[int, int, int, int, int, int]:
    import time

    t = time.gmtime()
    return (t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec)
