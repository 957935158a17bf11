"""HTTP conventions from the standards review (issue 15): Vary on content negotiation, Accept-Encoding's
q-values, Location on 201."""

from __future__ import annotations

import gzip

import pytest
from aiohttp.test_utils import TestClient

from fieldcomms.app import accepts_gzip


def vary_of(headers: object) -> set[str]:
    values = headers.getall("Vary", [])  # type: ignore[attr-defined]
    return {v.strip().lower() for value in values for v in value.split(",")}


@pytest.mark.parametrize(("header", "expected"), [
    ("gzip", True), ("GZIP", True), ("gzip, deflate, br", True), ("x-gzip", True), ("*", True),
    ("gzip;q=0.5", True), ("br;q=1.0, gzip;q=0.001", True), ("gzip ; q=1", True),
    ("", False), ("identity", False), ("br", False), ("gzip;q=0", False), ("gzip; q=0.000", False),
    ("*;q=0", False), ("gzip;q=0, *", False), ("*, gzip;q=0", False), ("deflate, *;q=0", False),
    ("gzip;q=nonsense", False),
])
def test_accept_encoding_q_values(header: str, expected: bool) -> None:
    assert accepts_gzip(header) is expected


@pytest.mark.parametrize("url", ["/api/v1/openapi.json", "/static/fieldcomms.css", "/static/control.js"])
async def test_compressible_answers_vary_on_accept_encoding(client: TestClient, url: str) -> None:
    for encoding, compressed in (("gzip", True), ("identity", False), ("gzip;q=0", False),
                                 ("gzip;q=0, *;q=1", False), ("*", True)):
        resp = await client.get(url, headers={"Accept-Encoding": encoding}, auto_decompress=False)
        assert resp.status == 200
        raw = await resp.read()
        assert "accept-encoding" in vary_of(resp.headers), (url, encoding, resp.headers)
        assert (resp.headers.get("Content-Encoding") == "gzip") is compressed, (url, encoding)
        if compressed:
            gzip.decompress(raw)
        # A revalidation gets the same Vary as the answer it stands for (RFC 9110 s15.4.5).
        etag = resp.headers["ETag"]
        again = await client.get(url, headers={"Accept-Encoding": encoding, "If-None-Match": etag})
        assert again.status == 304
        assert "accept-encoding" in vary_of(again.headers)
    assert len(resp.headers.getall("Vary")) == 1  # one header, each name once


async def test_a_small_answer_varies_too(client: TestClient) -> None:
    """Too small to compress today, but a cache must still not assume every answer is the same."""
    resp = await client.get("/healthz", headers={"Accept-Encoding": "gzip"})
    assert resp.status == 200 and "Content-Encoding" not in resp.headers
    assert {"accept-encoding", "authorization"} <= vary_of(resp.headers)


# ---- 201 Location ---------------------------------------------------------------------------------------------


def jpeg_bytes() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (120, 30, 30)).save(buf, "JPEG")
    return buf.getvalue()


async def test_every_create_answers_location(client: TestClient, admin_token: str, control_token: str,
                                             officer_token: str, event: dict[str, object]) -> None:
    """RFC 9110 s15.3.2: a 201 names the new resource; where the API reads it back, that URL answers with it.
    A replay of the same Idempotency-Key names the same resource."""
    from aiohttp import FormData

    tag = event["tag"]
    officer, control, admin = ({"Authorization": f"Bearer {t}"} for t in (officer_token, control_token, admin_token))
    form = FormData()
    form.add_field("file", jpeg_bytes(), filename="a.jpg", content_type="image/jpeg")
    cases: list[tuple[str, str, dict[str, str], dict[str, object] | FormData, str, bool]] = [
        # (route, key, headers, body, Location as a template of the answer, readable at Location)
        ("/api/v1/events", "e1", control, {"tag": "second_event", "title": "Second"}, "/api/v1/events/{tag}", True),
        ("/api/v1/users", "u1", admin, {"name": "N", "callsign": "PC77", "role": "officer"},
         "/api/v1/users/{callsign}", False),
        (f"/api/v1/events/{tag}/updates", "p1", officer, {"text": "An update."}, "/api/v1/updates/{id}", True),
        ("/api/v1/photos", "ph1", officer, form, "/media/{id}", True),
        (f"/api/v1/events/{tag}/rumours", "r1", officer, {"claim": "Snipers on the roof"}, "/api/v1/rumours/{id}",
         True),
        (f"/api/v1/events/{tag}/zones", "z1", control, {
            "type": "Feature", "geometry": {"type": "Point", "coordinates": [-1.47, 53.38]},
            "properties": {"name": "RV point", "kind": "rendezvous", "buffer_m": 20}}, "/api/v1/zones/{id}", False),
        (f"/api/v1/events/{tag}/alerts", "a1", control, {
            "text": "Go to the gate", "location": {"lat": 53.38, "lon": -1.47}, "radius_m": 100},
         "/api/v1/alerts/{id}", True),
    ]
    made: dict[str, dict[str, object]] = {}
    for route, key, headers, body, template, readable in cases:
        for attempt in ("first", "replay"):
            kwargs = {"data": body} if isinstance(body, FormData) else {"json": body}
            if isinstance(body, FormData) and attempt == "replay":
                form = FormData()
                form.add_field("file", jpeg_bytes(), filename="a.jpg", content_type="image/jpeg")
                kwargs = {"data": form}
            resp = await client.post(route, headers={**headers, "Idempotency-Key": key}, **kwargs)
            assert resp.status == 201, (route, attempt, await resp.text())
            out = await resp.json(content_type=None)
            made[route] = out
            assert resp.headers.get("Location") == template.format_map(out), (route, attempt, resp.headers)
        if readable:
            back = await client.get(resp.headers["Location"], headers=control)
            assert back.status == 200, (route, await back.text())

    # Sightings and rebuttals change a rumour: the 201 names that rumour.
    rumour = made[f"/api/v1/events/{tag}/rumours"]
    update = made[f"/api/v1/events/{tag}/updates"]
    public = await client.post(f"/api/v1/events/{tag}/updates", headers=officer,
                               json={"text": "No snipers: photo from the roof.", "visibility": "public"})
    for path, body in ((f"/api/v1/rumours/{rumour['id']}/sightings", {"text": "seen again"}),
                       (f"/api/v1/rumours/{rumour['id']}/rebuttals",
                        {"verdict": "false", "update_id": (await public.json())["id"]})):
        resp = await client.post(path, headers=officer, json=body)
        assert resp.status == 201, await resp.text()
        assert resp.headers.get("Location") == f"/api/v1/rumours/{rumour['id']}"
    assert update["id"]

    # Not a 201, no Location: a refusal, or a 202.
    refused = await client.post(f"/api/v1/events/{tag}/updates", headers=officer, json={"text": ""})
    assert refused.status == 422 and "Location" not in refused.headers
