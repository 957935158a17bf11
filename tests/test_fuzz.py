"""Fuzzing the served API with schemathesis, as each role, against a real server process.

aiohttp is not ASGI, so the server runs as `python -m fieldcomms serve` on a free loopback port with a temporary
data directory; its users are made with `fieldcomms user add` before it starts, and the schema is loaded from
its own `/api/v1/openapi.json`. Every operation is fuzzed as the public, an officer, control and admin, with
data that fits the schema (positive) and data that does not (negative), some of it aimed at items that exist
(the event, an update, a rumour...), so that requests get past the 404 to the code behind it.

Checks on every response:
- no 5xx (`not_a_server_error`);
- every error (>= 400) is `application/problem+json` with the RFC 9457 members `type`, `title`, `status` (equal
  to the HTTP status) and `detail` (`problem_details`, ours); the one exception is what the document says
  itself: the pages' 404, a short HTML page for a person who followed a link;
- the status code, content type, headers and body match what the document says for that status
  (`status_code_conformance`, `content_type_conformance`, `response_headers_conformance`,
  `response_schema_conformance`);
- an operation that needs a token refuses the same request without one or with a wrong one (`ignored_auth`,
  which re-sends each successful staff request without its token).

Excluded: the stream (`GET .../stream`) never ends, so no request to it returns; it is covered by
tests/api/test_stream.py and the leak hunt, and here by a bounded request in `test_stream_answers_errors_as_
problems`. Media, pages and feeds are fuzzed like everything else; schemathesis checks their status and content
type, and skips the body check for formats it cannot read (images, HTML, XML), which the feed, page and media
tests read with real parsers (feedparser, lxml, Pillow).

Bounded for CI: `EXAMPLES` (15) positive and `NEGATIVE_EXAMPLES` (10) negative cases per operation and role
(negative only where something can be invalid: a body, or a typed or constrained parameter), derandomized (the
same cases every run), no shrinking (a failure is reported with the case that found it), no deadline. The whole
file runs in one to two minutes. For a longer hunt: `FUZZ_EXAMPLES=150 FUZZ_NEGATIVE_EXAMPLES=100`.

Also here: what the fuzzer cannot send (conditional GETs, idempotent replays, bodies over the limit, wrong
methods), validated with the same checks, and hypothesis property tests of the validators the model tests do
not cover (rumours, sightings, rebuttals, reports, positions, alerts, zones, bbox).
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
import shapely
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from PIL import Image
from procs import free_port, stop
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from fieldcomms.domain import alerts, positions, reports, rumours
from fieldcomms.errors import ValidationFailed
from fieldcomms.geo import parse_zone_feature
from fieldcomms.spatial import parse_bbox

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
ROLES = ("public", "officer", "control", "admin")
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "15"))
NEGATIVE_EXAMPLES = int(os.environ.get("FUZZ_NEGATIVE_EXAMPLES", "10"))
PROBLEM = "application/problem+json"
EXCLUDED = {("GET", "/api/v1/events/{tag}/stream")}
# A fresh evidence bundle each time (its manifest is timed and signed, its access recorded): never cached.
NOT_CACHED = {("GET", "/api/v1/events/{tag}/export")}
TAG = "fuzzevent"
PATCH_TAG = "fuzzpatched"  # PATCH may close an event: it gets its own, so that TAG stays open for posts


def cli(data_dir: Path, *args: str, env: dict[str, str]) -> str:
    out = subprocess.run([sys.executable, "-m", "fieldcomms", *args, "--data-dir", str(data_dir)], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


@dataclass
class Server:
    base: str
    tokens: dict[str, str]
    log: Path
    ids: dict[str, list[str]] = field(default_factory=dict)

    def headers(self, role: str) -> dict[str, str]:
        token = self.tokens.get(role)
        return {"Authorization": f"Bearer {token}"} if token else {}

    def call(self, method: str, path: str, role: str, expect: int, **kw: Any) -> Any:
        resp = requests.request(method, self.base + path, headers={**self.headers(role), **kw.pop("headers", {})},
                                timeout=10, **kw)
        assert resp.status_code == expect, f"{method} {path}: {resp.status_code} {resp.text[:300]}"
        return resp.json() if resp.content and "json" in resp.headers.get("Content-Type", "") else None

    def errors(self) -> str:
        """What the server logged as unhandled (tracebacks), for a failure message."""
        text = self.log.read_text(errors="replace")
        return "\n".join(line for line in text.splitlines() if "Traceback" in line or "Error" in line)[-4000:]


def png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (120, 10, 200)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("fuzz") / "data"
    env = {**os.environ, "FIELDCOMMS_FSYNC": "false", "FIELDCOMMS_DEMO_ADMIN": "false",
           "FIELDCOMMS_REPORT_BURST": "1000000", "FIELDCOMMS_REPORT_RATE_PER_MINUTE": "1000000",
           "FIELDCOMMS_AUTH_FAILURES_PER_MINUTE": "1000000", "FIELDCOMMS_LOG_LEVEL": "WARNING",
           "FIELDCOMMS_SSE_KEEPALIVE_S": "1"}
    tokens = {role: cli(data, "user", "add", "--name", f"Fuzz {role}", "--callsign", f"fz{role}", "--role", role,
                        env=env) for role in ("officer", "control", "admin")}
    cli(data, "user", "add", "--name", "Victim", "--callsign", "victim1", "--role", "officer", env=env)
    port = free_port()
    log = data.parent / "server.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "fieldcomms", "serve", "--host", "127.0.0.1", "--port",
                                 str(port), "--data-dir", str(data)], cwd=ROOT, env=env, stdout=sink, stderr=sink)
    try:
        srv = Server(f"http://127.0.0.1:{port}", tokens, log)
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(srv.base + "/healthz", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)
        populate(srv)
        yield srv
    finally:
        stop(proc)


def populate(srv: Server) -> None:
    """Items for the fuzzer to aim at: real ids for path parameters."""
    for tag in (TAG, PATCH_TAG):
        srv.call("POST", "/api/v1/events", "control", 201, json={"tag": tag, "title": "Fuzz", "status": "live"})
    srv.call("POST", f"/api/v1/events/{TAG}/positions", "officer", 204, json={"lat": 53.38, "lon": -1.47})
    zone = srv.call("POST", f"/api/v1/events/{TAG}/zones", "control", 201, json={
        "type": "Feature", "geometry": {"type": "Point", "coordinates": [-1.47, 53.38]},
        "properties": {"name": "Rendezvous", "kind": "rendezvous", "visibility": "public", "buffer_m": 50}})
    photo = srv.call("POST", "/api/v1/photos", "officer", 201, files={"file": ("p.png", png(), "image/png")})
    public = srv.call("POST", f"/api/v1/events/{TAG}/updates", "officer", 201, json={
        "text": "Public warning", "visibility": "public", "kind": "warning", "location": {"lat": 53.38, "lon": -1.47},
        "photos": [photo["id"]]})
    internal = srv.call("POST", f"/api/v1/events/{TAG}/updates", "officer", 201, json={"text": "Internal"})
    rumour = srv.call("POST", f"/api/v1/events/{TAG}/rumours", "officer", 201, json={"claim": "Snipers on the roofs"})
    answered = srv.call("POST", f"/api/v1/events/{TAG}/rumours", "officer", 201, json={"claim": "A kettle"})
    srv.call("POST", f"/api/v1/rumours/{answered['id']}/rebuttals", "officer", 201,
             json={"verdict": "false", "update_id": public["id"]})
    srv.call("POST", f"/api/v1/events/{TAG}/reports", "public", 202, json={"text": "snipers on the roof?"})
    decision = srv.call("POST", f"/api/v1/events/{TAG}/decisions", "control", 201,
                        json={"decision": "Hold the gate", "rationale": "Crowd density"})
    alert = srv.call("POST", f"/api/v1/events/{TAG}/alerts", "control", 201, json={
        "text": "Move to the gate", "location": {"lat": 53.38, "lon": -1.47}, "radius_m": 500})
    # Items the fuzzer may delete or retract, so that the others stay for the tests that read them.
    doomed_update = srv.call("POST", f"/api/v1/events/{TAG}/updates", "officer", 201, json={"text": "Doomed"})
    doomed_zone = srv.call("POST", f"/api/v1/events/{TAG}/zones", "control", 201, json={
        "type": "Feature", "geometry": {"type": "Point", "coordinates": [-1.48, 53.38]},
        "properties": {"name": "Doomed", "kind": "hazard"}})
    srv.ids = {"tag": [TAG], "update": [public["id"], internal["id"]], "rumour": [rumour["id"], answered["id"]],
               "alert": [alert["id"]], "zone": [zone["id"]], "photo": [photo["id"]], "callsign": ["victim1"],
               "decision": [decision["id"]],
               "DELETE update": [doomed_update["id"]], "DELETE zone": [doomed_zone["id"]]}


JSON_BODY = "application/json"  # for operations that also take multipart (reports, updates)


def known_path_parameters(srv: Server, method: str, path: str) -> list[dict[str, str]]:
    """Path parameters naming items that exist, for this operation."""
    if "{tag}" in path:
        tag = {"tag": PATCH_TAG if method == "PATCH" else TAG}
        return [{**tag, "id": value} for value in srv.ids["decision"]] if "{id}" in path else [tag]
    if path.startswith("/app/{"):
        return [{"name": "main.js"}, {"name": "app.css"}, {"name": "icon-192.png"}]
    kinds = {"/api/v1/updates/": "update", "/api/v1/rumours/": "rumour", "/api/v1/alerts/": "alert",
             "/api/v1/zones/": "zone", "/media/": "photo", "/api/v1/users/": "callsign",
             "/api/v1/photos/": "photo", "/api/v1/decisions/": "decision"}
    for prefix, kind in kinds.items():
        if path.startswith(prefix):
            name = "callsign" if kind == "callsign" else "id"
            return [{name: value} for value in srv.ids.get(f"{method} {kind}", srv.ids[kind])]
    return []


# ---- checks ------------------------------------------------------------------------------------------------


def documented_content_types(case: Any, status: int) -> set[str]:
    responses = case.operation.definition.raw.get("responses", {})
    spec = responses.get(str(status)) or responses.get("default") or {}
    if "$ref" in spec:
        return {PROBLEM}
    return set(spec.get("content", {}))


def problem_details(ctx: Any, response: Any, case: Any) -> bool | None:
    """RFC 9457: an error is application/problem+json with type, title, status (= the HTTP status), detail."""
    status = response.status_code
    if status < 400:
        return None
    ctype = (response.headers.get("content-type") or [""])[0].split(";")[0].strip().lower()
    if ctype != PROBLEM:
        documented = documented_content_types(case, status)
        if ctype in documented and PROBLEM not in documented:
            return None  # the document says so (the pages' HTML 404)
        raise AssertionError(f"{status} answered as {ctype!r}, not {PROBLEM}: {response.content[:200]!r}")
    body = response.json()
    assert isinstance(body, dict), body
    missing = [k for k in ("type", "title", "status", "detail") if k not in body]
    assert not missing, f"problem without {missing}: {body}"
    assert body["status"] == status, f"problem status {body['status']} on a {status} response"
    assert all(isinstance(body[k], str) and body[k] for k in ("type", "title", "detail")), body
    for error in body.get("errors", []):
        assert isinstance(error.get("field"), str) and isinstance(error.get("message"), str), body
    return None


CHECKS = [not_a_server_error, problem_details, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance, ignored_auth]


# ---- the fuzzer --------------------------------------------------------------------------------------------


@dataclass
class Finding:
    operation: str
    role: str
    mode: str
    message: str


def fuzz_operation(srv: Server, operation: Any, role: str, mode: GenerationMode, examples: int) -> list[Finding]:
    findings: list[Finding] = []
    label = f"{operation.method.upper()} {operation.path}"
    strategies = [operation.as_strategy(generation_mode=mode)]
    for params in known_path_parameters(srv, operation.method.upper(), operation.path):
        strategies.append(operation.as_strategy(generation_mode=mode, path_parameters=params))
    headers = srv.headers(role)

    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=st.one_of(strategies))
    def run(case: Any) -> None:
        if role == "public":
            case.headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
        response = case.call(headers=headers, timeout=15)
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except (Exception, BaseExceptionGroup) as exc:  # schemathesis' FailureGroup: record it and go on
            message = str(exc).strip()
            findings.append(Finding(label, role, mode.value, f"{response.status_code}: {message[:1500]}"))

    try:
        run()
    except Unsatisfiable:
        assert mode is GenerationMode.NEGATIVE, f"{label}: no positive case could be generated"
        # Nothing in the operation can be made invalid (no parameters, no body): positive cases cover it.
    return findings


def negatable(operation: Any) -> bool:
    """Whether anything of the request can be made invalid: a body, or a parameter with a type or a constraint.
    (An operation with nothing but free strings, like `GET /api/v1/updates/{id}`, has no invalid input; hypothesis
    would spend seconds looking for one.)"""
    raw = operation.definition.raw
    if "requestBody" in raw:
        return True
    return any(param.get("schema", {}).get("type", "string") != "string" or set(param.get("schema", {})) - {"type"}
               for param in raw.get("parameters", []) if param.get("in") != "header")


@pytest.fixture(scope="module")
def api_schema(server: Server) -> Any:
    schema = schemathesis.openapi.from_url(server.base + "/api/v1/openapi.json")
    schema.config.generation.update(with_security_parameters=False, allow_x00=True)
    return schema


@pytest.mark.parametrize("role", ROLES)
def test_fuzz_every_operation(server: Server, api_schema: Any, role: str, capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    findings: list[Finding] = []
    operations = 0
    for result in api_schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) in EXCLUDED:
            continue
        operations += 1
        findings.extend(fuzz_operation(server, operation, role, GenerationMode.POSITIVE, EXAMPLES))
        if negatable(operation):
            findings.extend(fuzz_operation(server, operation, role, GenerationMode.NEGATIVE, NEGATIVE_EXAMPLES))
    unique: dict[tuple[str, str, str], Finding] = {}
    for f in findings:
        unique.setdefault((f.operation, f.mode, f.message.splitlines()[0][:120]), f)
    with capsys.disabled():
        print(f"\nfuzz as {role}: {operations} operations, {time.monotonic() - started:.1f} s, "
              f"{len(findings)} failing cases ({len(unique)} distinct)")
    report = "\n\n".join(f"[{f.role} {f.mode}] {f.operation}\n{f.message}" for f in unique.values())
    assert not findings, report + "\n\nserver log:\n" + server.errors()


def test_stream_answers_errors_as_problems(server: Server) -> None:
    """The stream is left out of the fuzzing (it never ends); its answers that do end are checked here."""
    for path, expect in ((f"/api/v1/events/{TAG}/stream?since=-1", 422), ("/api/v1/events/nope/stream", 404),
                         (f"/api/v1/events/{TAG}/stream?since=x", 422)):
        resp = requests.get(server.base + path, timeout=5)
        assert resp.status_code == expect, (path, resp.status_code, resp.text)
        assert resp.headers["Content-Type"].startswith(PROBLEM)
        assert resp.json()["status"] == expect
    resp = requests.get(server.base + f"/api/v1/events/{TAG}/stream", headers={"Authorization": "Bearer nope"},
                        timeout=5)
    assert resp.status_code == 401 and resp.headers["Content-Type"].startswith(PROBLEM)
    with requests.get(server.base + f"/api/v1/events/{TAG}/stream?since=0", stream=True, timeout=5) as resp:
        assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
        first = next(resp.iter_content(chunk_size=None))
        assert first.startswith(b"retry: 3000")


# ---- what the fuzzer does not send: conditional GETs, replays, limits, wrong methods ---------------------


def validated(case: Any, role: str, server: Server, **headers: str) -> Any:
    response = case.call(headers={**server.headers(role), **headers}, timeout=15)
    case.validate_response(response, checks=CHECKS, headers=headers)
    return response


def known_case(server: Server, operation: Any, **kw: Any) -> Any:
    params = known_path_parameters(server, operation.method.upper(), operation.path)
    return operation.Case(path_parameters=params[0] if params else {}, **kw)


def test_conditional_gets_are_documented(server: Server, api_schema: Any) -> None:
    """Every GET that answers 200 sends an ETag and answers 304 to If-None-Match: the document must say so."""
    checked = []
    for result in api_schema.get_all_operations():
        operation = result.ok()
        if operation.method.upper() != "GET" or ("GET", operation.path) in EXCLUDED | NOT_CACHED:
            continue
        query = {"lat": 53.38, "lon": -1.47, "radius_m": 100} if operation.path.endswith("/nearby") else None
        if operation.path.endswith("/original"):
            query = {"reason": "checking conditional GETs"}
        for role in ROLES:
            case = known_case(server, operation, query=query)
            first = validated(case, role, server)
            if first.status_code == 200:
                break
        assert first.status_code == 200, f"{operation.label}: no role gets it"
        etag = first.headers.get("etag", [None])[0]
        assert etag, f"{operation.label}: 200 without an ETag"
        again = validated(known_case(server, operation, query=query), role, server, **{"If-None-Match": etag})
        if again.status_code == 200:  # it changed in between (/metrics counts the request itself)
            assert again.headers["etag"][0] != etag, f"{operation.label}: the same ETag, but no 304"
        else:
            assert again.status_code == 304, f"{operation.label}: {again.status_code} to a matching If-None-Match"
        checked.append(operation.label)
    assert len(checked) >= 20, checked


def test_replays_limits_and_wrong_requests_answer_as_documented(server: Server, api_schema: Any) -> None:
    reports = api_schema["/api/v1/events/{tag}/reports"]["POST"]
    for _ in range(2):  # the replay answers what the first answered
        case = reports.Case(path_parameters={"tag": TAG}, body={"text": "kettle at the gate"}, media_type=JSON_BODY,
                            headers={"Idempotency-Key": "fuzz-replay-1"})
        assert validated(case, "public", server).status_code == 202
    case = reports.Case(path_parameters={"tag": TAG}, body={"text": "a different report"}, media_type=JSON_BODY,
                        headers={"Idempotency-Key": "fuzz-replay-1"})
    assert validated(case, "public", server).status_code == 422

    updates = api_schema["/api/v1/events/{tag}/updates"]["POST"]
    case = updates.Case(path_parameters={"tag": TAG}, body={"text": "x" * 300_000}, media_type="application/json")
    assert validated(case, "officer", server).status_code == 413
    resp = requests.post(f"{server.base}/api/v1/events/{TAG}/updates", data=b"<update/>", timeout=10,
                         headers={**server.headers("officer"), "Content-Type": "application/xml"})
    assert resp.status_code == 415

    for method, path, status in (("PUT", "/api/v1/events", 405), ("GET", "/api/v1/nothing", 404),
                                 ("DELETE", f"/api/v1/events/{TAG}", 405), ("GET", "/media/../data/LOCK", 404),
                                 ("POST", f"/api/v1/events/{TAG}/updates", 401)):
        resp = requests.request(method, server.base + path, timeout=10)
        assert resp.status_code == status, (method, path, resp.status_code)
        assert resp.headers["Content-Type"].startswith(PROBLEM), (method, path, resp.headers["Content-Type"])
        assert resp.json()["status"] == status

    stream = api_schema["/api/v1/events/{tag}/stream"]["GET"]
    for params, query, status in (({"tag": TAG}, {"since": -1}, 422), ({"tag": "nope"}, None, 404)):
        assert validated(stream.Case(path_parameters=params, query=query), "public", server).status_code == status


# ---- validators, by property: any JSON in, a normalised value or a 422 naming fields out ------------------

JSON_SCALARS = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True)
                | st.text(max_size=30) | st.sampled_from(["", " ", "\x00", "2011-03-12T10:00:00Z", "https://x.example/",
                                                         "false", "public", "Point", "Polygon", "Feature"]))
FIELD_NAMES = st.sampled_from(["text", "claim", "location", "source", "url", "seen_at", "report_id", "verdict",
                               "update_id", "photos", "status", "contact", "lat", "lon", "accuracy_m", "at",
                               "radius_m", "type", "geometry", "properties", "coordinates", "name", "kind",
                               "visibility", "buffer_m"]) | st.text(max_size=8)
JSON_VALUES = st.recursive(JSON_SCALARS, lambda children: st.lists(children, max_size=5)
                           | st.dictionaries(FIELD_NAMES, children, max_size=6), max_leaves=25)
COORD = st.floats(-200, 200) | st.floats(allow_nan=True, allow_infinity=True) | st.integers(-181, 181)
LOCATIONS = st.fixed_dictionaries({"lat": COORD, "lon": COORD}, optional={"accuracy_m": COORD | JSON_SCALARS})
POSITIONS = st.lists(COORD, min_size=1, max_size=4)
GEOMETRIES = (st.fixed_dictionaries({"type": st.just("Point"), "coordinates": POSITIONS})
              | st.fixed_dictionaries({"type": st.just("LineString"), "coordinates": st.lists(POSITIONS, max_size=5)})
              | st.fixed_dictionaries({"type": st.just("Polygon"), "coordinates": st.lists(
                  st.lists(POSITIONS, max_size=7).map(lambda ring: ring + ring[:1]), max_size=2)}) | JSON_VALUES)
ZONES = st.fixed_dictionaries({"type": st.just("Feature") | JSON_SCALARS, "geometry": GEOMETRIES,
                               "properties": st.fixed_dictionaries({}, optional={
                                   "name": JSON_SCALARS, "kind": st.sampled_from(["cordon", "hazard"]) | JSON_SCALARS,
                                   "visibility": st.sampled_from(["public", "internal"]) | JSON_SCALARS,
                                   "buffer_m": COORD | JSON_SCALARS}) | JSON_VALUES}) | JSON_VALUES
BODIES = JSON_VALUES | st.fixed_dictionaries({}, optional={
    "text": JSON_SCALARS, "claim": JSON_SCALARS, "contact": JSON_SCALARS, "verdict": JSON_SCALARS,
    "update_id": JSON_SCALARS, "report_id": JSON_SCALARS, "status": JSON_SCALARS, "url": JSON_SCALARS,
    "seen_at": JSON_SCALARS, "at": JSON_SCALARS, "radius_m": COORD | JSON_SCALARS, "lat": COORD, "lon": COORD,
    "location": LOCATIONS | JSON_VALUES, "source": JSON_VALUES, "photos": JSON_VALUES})


def _located(loc: Any) -> None:
    if loc is not None:
        assert -90 <= loc["lat"] <= 90 and -180 <= loc["lon"] <= 180, loc
        assert loc.get("accuracy_m") is None or loc["accuracy_m"] >= 0, loc


def _refused_properly(exc: Exception) -> None:
    assert isinstance(exc, ValidationFailed), f"{type(exc).__name__}: {exc}"
    assert exc.errors and all(isinstance(e.get("field"), str) and isinstance(e.get("message"), str)
                              for e in exc.errors), exc.errors


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(BODIES)
def test_domain_validators_answer_a_value_or_a_field_by_field_422(body: Any) -> None:
    validators = {
        "rumour": lambda b: rumours.validate_rumour_create(b, 2000),
        "sighting": lambda b: rumours.validate_sighting(b, 2000),
        "rebuttal": lambda b: rumours.validate_rebuttal(b, 2000, 4),
        "status": rumours.validate_status_patch,
        "report": lambda b: reports.validate_report(b, 2000),
        "position": positions.validate_position,
        "alert": lambda b: alerts.validate_alert(b, 2000),
    }
    for name, validate in validators.items():
        try:
            out = validate(body)
        except Exception as exc:
            _refused_properly(exc)
            continue
        if name == "rumour":
            assert 1 <= len(out["claim"]) <= 500 and out["claim"] == out["claim"].strip()
            _located(out["location"])
        elif name == "position":
            _located(out)
        elif name == "alert":
            _located(out["location"])
            assert 0 < out["radius_m"] <= 50_000 and 1 <= len(out["text"]) <= 2000
        elif name == "report":
            assert 1 <= len(out["text"]) <= 2000 and (out["contact"] is None or len(out["contact"]) <= 200)
            _located(out["location"])
        elif name == "status":
            assert out in ("unverified", "investigating", "false", "misleading", "true", "unproven")
        elif name == "rebuttal":
            assert out["verdict"] in ("false", "misleading", "true", "unproven")
            assert (out["update_id"] is None) != (out["update"] is None)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(ZONES)
def test_zone_features_come_back_valid_and_counter_clockwise_or_422(body: Any) -> None:
    try:
        zone = parse_zone_feature(body)
    except Exception as exc:
        _refused_properly(exc)
        return
    geometry = zone["geometry"]
    assert geometry["type"] in ("Point", "LineString", "Polygon")
    assert zone["kind"] in ("demonstration-area", "march-route", "cordon", "rendezvous", "hazard", "other")
    assert zone["visibility"] in ("public", "internal") and 0 <= zone["buffer_m"] <= 50_000
    shape = shapely.geometry.shape(geometry)
    assert shape.is_valid and not shape.is_empty
    for lon, lat in shapely.get_coordinates(shape).tolist():
        assert -180 <= lon <= 180 and -90 <= lat <= 90
    if geometry["type"] == "Polygon":
        assert shape.exterior.is_ccw and all(not ring.is_ccw for ring in shape.interiors)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.text(max_size=60) | st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(),
                                                 st.text(max_size=5)), max_size=6).map(lambda v: ",".join(map(str, v))))
def test_bbox_parses_to_an_ordered_box_or_422(raw: str) -> None:
    try:
        minlon, minlat, maxlon, maxlat = parse_bbox(raw)
    except Exception as exc:
        _refused_properly(exc)
        return
    assert -180 <= minlon <= maxlon <= 180 and -90 <= minlat <= maxlat <= 90


# ---- regressions: what the fuzzing found ------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/events/libdempolicing/updates", "/api/v1/photos"])
async def test_multipart_part_headers_that_do_not_parse_are_400(client: Any, officer_token: str, event: Any,
                                                                 path: str) -> None:
    """Found by the fuzzer: a part whose Content-Disposition holds a control character made aiohttp's header
    parser raise InvalidHeader, which escaped as a 500."""
    body = (b'--b\r\nContent-Disposition: form-data; name="x\x15"\r\n\r\nfalse\r\n'
            b'--b\r\nContent-Disposition: form-data; name="update"\r\n\r\n{"text": "hi"}\r\n--b--\r\n')
    resp = await client.post(path, data=body, headers={"Authorization": f"Bearer {officer_token}",
                                                       "Content-Type": "multipart/form-data; boundary=b"})
    assert resp.status == 400, await resp.text()
    assert resp.content_type == PROBLEM
