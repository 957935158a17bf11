"""The evidence bundle, read with real readers (zipfile, csv, shapely, lxml, the Ed25519 key), and
`fieldcomms verify` on good, altered, truncated and incomplete bundles."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import orjson
import pytest
import shapely.geometry
from aiohttp.test_utils import TestClient
from conftest import auth
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from lxml import etree

from .world import CONTACT, TAG, World, build

EXPECTED = {"manifest.json", "manifest.sig", "signing-key.pub", "updates.geojson", "updates.csv", "zones.geojson",
            "event.kml", "rumours.json", "reports.json", "alerts.json", "positions.csv", "decisions.json",
            "audit.json"}
KML = "{http://www.opengis.net/kml/2.2}"


def verify(path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fieldcomms", "verify", str(path), *extra], capture_output=True,
                          text=True, timeout=60)


@pytest.fixture
async def exported(client: TestClient, officer_token: str, control_token: str, admin_token: str,
                   event: dict[str, Any], tmp_path: Path) -> tuple[World, bytes, Path]:
    world = await build(client, officer_token, control_token)
    resp = await client.get(f"/api/v1/events/{TAG}/export?reason=Disclosure+to+IOPC", headers=auth(control_token))
    assert resp.status == 200, await resp.text()
    assert resp.content_type == "application/zip"
    assert resp.headers["Content-Disposition"].startswith("attachment")
    data = await resp.read()
    path = tmp_path / "bundle.zip"
    path.write_bytes(data)
    return world, data, path


async def test_bundle_contents_read_with_real_readers(client: TestClient, exported: tuple[World, bytes, Path],
                                                     admin_token: str) -> None:
    world, data, path = exported
    zf = zipfile.ZipFile(io.BytesIO(data))
    assert zf.testzip() is None
    names = set(zf.namelist())
    photo_name = f"photos/{world.photo['id']}.jpg"
    assert names == EXPECTED | {photo_name}
    assert zf.read(photo_name) == world.photo_bytes

    # The manifest, its signature by the key GET /chain/key publishes, and every file's hash.
    manifest_raw = zf.read("manifest.json")
    manifest = orjson.loads(manifest_raw)
    key_json = await (await client.get("/api/v1/chain/key")).json()
    assert key_json["algorithm"] == "Ed25519"
    key = Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(key_json["public_key"] + "=="))
    key.verify(zf.read("manifest.sig"), manifest_raw)  # raises if it does not match
    bundled = load_pem_public_key(zf.read("signing-key.pub"))
    assert isinstance(bundled, Ed25519PublicKey) and bundled.public_bytes_raw() == key.public_bytes_raw()
    assert manifest["format"] == "fieldcomms-export/1" and manifest["event"] == TAG
    assert manifest["reason"] == "Disclosure to IOPC" and manifest["generated_by"]["callsign"] == "control1"
    assert manifest["chain_head"]["seq"] >= world.decision["seq"]
    listed = {f["path"]: f for f in manifest["files"]}
    assert set(listed) == names - {"manifest.json", "manifest.sig", "signing-key.pub"}
    for name, entry in listed.items():
        content = zf.read(name)
        assert hashlib.sha256(content).hexdigest() == entry["sha256"] and len(content) == entry["bytes"]

    # updates.geojson: every update, internal and retracted included; RFC 7946 geometries.
    geo = orjson.loads(zf.read("updates.geojson"))
    assert geo["type"] == "FeatureCollection" and "crs" not in geo
    by_id = {f["id"]: f for f in geo["features"]}
    assert set(by_id) == {u["id"] for u in world.updates}
    assert by_id[world.updates[2]["id"]]["properties"]["status"] == "retracted"
    assert by_id[world.updates[1]["id"]]["properties"]["visibility"] == "internal"
    assert by_id[world.updates[1]["id"]]["geometry"] is None
    point = shapely.geometry.shape(by_id[world.updates[0]["id"]]["geometry"])
    assert (point.x, point.y) == (-1.4779, 53.3789)
    zones = orjson.loads(zf.read("zones.geojson"))
    polygon = shapely.geometry.shape(zones["features"][0]["geometry"])
    assert polygon.is_valid and polygon.area > 0 and zones["features"][0]["properties"]["name"] == "Demo area"

    # updates.csv: a row per update, text with quotes and commas intact.
    rows = list(csv.DictReader(io.StringIO(zf.read("updates.csv").decode())))
    assert {r["id"] for r in rows} == {u["id"] for u in world.updates}
    first = next(r for r in rows if r["id"] == world.updates[0]["id"])
    assert first["text"] == world.updates[0]["text"] and first["photos"] == world.photo["id"]
    assert float(first["lat"]) == 53.3789

    # event.kml: KML 2.2, placemarks for the located updates, the rumour and the zone.
    kml = etree.fromstring(zf.read("event.kml"))
    assert kml.tag == f"{KML}kml"
    placemarks = {pm.get("id"): pm for pm in kml.iter(f"{KML}Placemark")}
    assert world.updates[0]["id"] in placemarks and world.rumour["id"] in placemarks
    assert world.zone["id"] in placemarks
    assert placemarks[world.updates[0]["id"]].findtext(f"{KML}Point/{KML}coordinates") == "-1.4779,53.3789"
    assert placemarks[world.updates[3]["id"]].findtext(f"{KML}description") == "Bell  <b>&amp; tags</b>"
    ring = placemarks[world.zone["id"]].findtext(f".//{KML}outerBoundaryIs/{KML}LinearRing/{KML}coordinates")
    assert ring is not None and ring.split()[0] == "-1.472,53.379"

    # The JSON files, and positions.csv with every recorded position.
    rumours = orjson.loads(zf.read("rumours.json"))
    assert rumours[0]["claim"] == "Police snipers on the roofs" and "sources" in rumours[0] and "history" in rumours[0]
    reports = orjson.loads(zf.read("reports.json"))
    assert reports[0]["contact"] == CONTACT
    assert orjson.loads(zf.read("alerts.json"))[0]["text"] == "Move to Fargate"
    assert orjson.loads(zf.read("decisions.json"))[0]["id"] == world.decision["id"]
    audit = orjson.loads(zf.read("audit.json"))
    assert [e["action"] for e in audit] == ["event.export"] and audit[0]["reason"] == "Disclosure to IOPC"
    positions = list(csv.DictReader(io.StringIO(zf.read("positions.csv").decode())))
    assert len(positions) == 3 and {p["officer_callsign"] for p in positions} == {"officer1"}

    # The export is in the access log.
    log = await (await client.get("/api/v1/audit?action=event.export", headers=auth(admin_token))).json()
    assert len(log["items"]) == 1 and log["items"][0]["target"] == {"type": "event", "id": TAG}


async def test_verify_passes_then_names_the_altered_file(exported: tuple[World, bytes, Path], tmp_path: Path,
                                                         client: TestClient) -> None:
    _world, data, path = exported
    ok = verify(path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith("OK:")
    key_file = tmp_path / "deployment.pub"
    key_file.write_text((await (await client.get("/api/v1/chain/key")).json())["pem"])
    assert verify(path, "--key", str(key_file)).returncode == 0

    src = zipfile.ZipFile(io.BytesIO(data))
    for victim in ("updates.csv", "event.kml", "audit.json"):
        # One byte changed in one file, the zip rebuilt around it (its CRC recomputed): only the manifest knows.
        altered = tmp_path / f"altered-{victim}.zip"
        with zipfile.ZipFile(altered, "w") as out:
            for info in src.infolist():
                content = src.read(info.filename)
                if info.filename == victim:
                    content = content[:40] + bytes([content[40] ^ 0x01]) + content[41:]
                out.writestr(info.filename, content)
        failed = verify(altered)
        assert failed.returncode == 1
        assert len(failed.stdout.strip().splitlines()) == 1 and victim in failed.stdout, failed.stdout
    # A byte changed in the zip's own bytes inside a file's compressed data: the zip's CRC check names it.
    raw = bytearray(data)
    info = src.getinfo("updates.geojson")
    raw[info.header_offset + 30 + len(info.filename) + 60] ^= 0xFF
    flipped = tmp_path / "flipped.zip"
    flipped.write_bytes(bytes(raw))
    failed = verify(flipped)
    assert failed.returncode == 1 and "updates.geojson" in failed.stdout, failed.stdout
    # A manifest signed by someone else: the signature fails against the deployment key given with --key.
    forged_manifest = src.read("manifest.json").replace(b"Disclosure to IOPC", b"Disclosure to press")
    forged = tmp_path / "forged.zip"
    with zipfile.ZipFile(forged, "w") as out:
        for i in src.infolist():
            out.writestr(i.filename, forged_manifest if i.filename == "manifest.json" else src.read(i.filename))
    failed = verify(forged, "--key", str(key_file))
    assert failed.returncode == 1 and "manifest.sig" in failed.stdout


def test_verify_refuses_what_is_not_a_good_bundle(exported: tuple[World, bytes, Path], tmp_path: Path) -> None:
    _world, data, _path = exported
    not_zip = tmp_path / "notes.zip"
    not_zip.write_text("these are not the files you are looking for")
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(data[: len(data) // 2])
    missing = tmp_path / "missing.zip"
    src = zipfile.ZipFile(io.BytesIO(data))
    with zipfile.ZipFile(missing, "w") as out:
        for info in src.infolist():
            if info.filename != "positions.csv":
                out.writestr(info.filename, src.read(info.filename))
    extra = tmp_path / "extra.zip"
    with zipfile.ZipFile(extra, "w") as out:
        for info in src.infolist():
            out.writestr(info.filename, src.read(info.filename))
        out.writestr("smuggled.txt", "not in the manifest")
    for path, named in ((not_zip, "not a readable zip"), (truncated, "not a readable zip"),
                        (missing, "positions.csv"), (extra, "smuggled.txt"), (tmp_path / "nope.zip", "no such file")):
        result = verify(path)
        assert result.returncode == 1, path
        lines = result.stdout.strip().splitlines()
        assert len(lines) == 1 and named in lines[0], result.stdout


async def test_export_bad_input_changes_nothing(client: TestClient, control_token: str, officer_token: str,
                                                admin_token: str, event: dict[str, Any]) -> None:
    url = f"/api/v1/events/{TAG}/export"
    assert (await client.get(url + "?reason=for+court")).status == 401
    assert (await client.get(url + "?reason=for+court", headers=auth(officer_token))).status == 403
    for query in ("", "?reason=no", "?reason=" + "y" * 501):
        resp = await client.get(url + query, headers=auth(control_token))
        assert resp.status == 422 and resp.content_type == "application/problem+json"
    assert (await client.get("/api/v1/events/nosuch/export?reason=for+court", headers=auth(control_token))).status == 404
    log = await (await client.get("/api/v1/audit", headers=auth(admin_token))).json()
    assert log["items"] == []


async def test_positions_csv_lists_every_point_of_a_long_track(client: TestClient, officer_token: str,
                                                               control_token: str, event: dict[str, Any]) -> None:
    """Tracks are documents of their own (one per point): positions.csv lists every point reported, not
    only the last 20 a position once carried, including a late one from an offline queue; a repeat is once."""
    from datetime import UTC, datetime, timedelta

    from fieldcomms.keys import SERVICES

    start = datetime.now(UTC) - timedelta(hours=1)
    sent = []
    for k in [*range(40), 39, -5]:  # a repeated report, then a late one
        at = (start + timedelta(seconds=30 * k)).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {"lat": 53.38 + k / 10000, "lon": -1.47, "accuracy_m": 9, "at": at}
        resp = await client.post(f"/api/v1/events/{TAG}/positions", json=body, headers=auth(officer_token))
        assert resp.status == 204
        if k == 20:
            await client.app[SERVICES].store.snapshot()  # some points only in the snapshot
        if body not in sent:
            sent.append(body)
    resp = await client.get(f"/api/v1/events/{TAG}/export?reason=Disclosure", headers=auth(control_token))
    assert resp.status == 200, await resp.text()
    zf = zipfile.ZipFile(io.BytesIO(await resp.read()))
    rows = list(csv.DictReader(io.StringIO(zf.read("positions.csv").decode())))
    assert [(float(r["lat"]), r["at"], float(r["accuracy_m"])) for r in rows] == \
        [(b["lat"], b["at"], 9.0) for b in sorted(sent, key=lambda b: b["at"])]
    assert len(rows) == 41 and {r["officer_callsign"] for r in rows} == {"officer1"}
