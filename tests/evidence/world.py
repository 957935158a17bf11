"""An event with something of everything, made through the API, for the export and purge tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiohttp.test_utils import TestClient
from conftest import auth

from .helpers import sample, upload

TAG = "libdempolicing"
CONTACT = "witness.unique.7731@example.org"
# A position no other item shares: the purge tests look for these digits in every file.
SECRET_LAT, SECRET_LON = 53.3791234567, -1.4712345678


@dataclass
class World:
    updates: list[dict[str, Any]] = field(default_factory=list)
    photo: dict[str, Any] = field(default_factory=dict)
    photo_bytes: bytes = b""
    rumour: dict[str, Any] = field(default_factory=dict)
    zone: dict[str, Any] = field(default_factory=dict)
    report_id: str = ""
    decision: dict[str, Any] = field(default_factory=dict)


async def build(client: TestClient, officer: str, control: str) -> World:
    w = World()
    w.photo_bytes = sample()
    w.photo = await upload(client, officer, w.photo_bytes)
    base = f"/api/v1/events/{TAG}"

    async def post(url: str, body: dict[str, Any], token: str, status: int = 201) -> dict[str, Any]:
        resp = await client.post(url, json=body, headers=auth(token))
        assert resp.status == status, await resp.text()
        out: dict[str, Any] = await resp.json() if resp.status != 204 else {}
        return out

    w.updates.append(await post(f"{base}/updates", {"text": "March gathering at Devonshire Green, \"quoted\", commas",
                                                    "visibility": "public", "photos": [w.photo["id"]],
                                                    "location": {"lat": 53.3789, "lon": -1.4779}}, officer))
    w.updates.append(await post(f"{base}/updates", {"text": "Internal: PSU 2 stood down"}, officer))
    w.updates.append(await post(f"{base}/updates", {"text": "Wrong road given", "visibility": "public",
                                                    "location": {"lat": 53.381, "lon": -1.47}}, officer))
    # A control character is valid JSON text but not XML: the KML must still be well-formed.
    w.updates.append(await post(f"{base}/updates", {"text": "Bell \u0007 <b>&amp; tags</b>", "visibility": "public",
                                                    "location": {"lat": 53.3795, "lon": -1.4705}}, officer))
    retracted = await client.delete(f"/api/v1/updates/{w.updates[2]['id']}", headers=auth(officer))
    assert retracted.status == 200
    w.rumour = await post(f"{base}/rumours", {"claim": "Police snipers on the roofs",
                                              "location": {"lat": 53.3801, "lon": -1.4701}}, officer)
    w.zone = await post(f"{base}/zones", {"type": "Feature", "properties": {"name": "Demo area",
                                                                            "kind": "demonstration-area"},
                                          "geometry": {"type": "Polygon", "coordinates": [[
                                              [-1.472, 53.379], [-1.469, 53.379], [-1.469, 53.381],
                                              [-1.472, 53.381], [-1.472, 53.379]]]}}, control)
    report = await client.post(f"{base}/reports", json={"text": "I saw snipers", "contact": CONTACT})
    assert report.status == 202
    w.report_id = (await report.json())["id"]
    for k in range(3):
        resp = await client.post(f"{base}/positions", json={"lat": SECRET_LAT + k * 1e-6, "lon": SECRET_LON},
                                 headers=auth(officer))
        assert resp.status == 204
    await post(f"{base}/alerts", {"text": "Move to Fargate", "location": {"lat": 53.3791, "lon": -1.4712},
                                  "radius_m": 500}, control)
    w.decision = await post(f"{base}/decisions", {"decision": "Hold the line", "rationale": "Crowd density"}, control)
    return w
