"""The served OpenAPI document is good enough to generate a working client from (issue 15).

openapi-python-client (a dev dependency; it works offline) generates a Python package from the document a
real `fieldcomms serve` process publishes; the test then calls operations through that package against the
same process. Generated clients name their functions after operationIds and group them by tags, so a
missing or duplicated operationId, or a schema that does not describe what the server sends, fails here.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from procs import free_port, stop

from fieldcomms.config import Settings

METHODS = ("get", "put", "post", "delete", "patch")
PACKAGE = "fieldcomms_generated_client"
TEXT_LIMIT = 300  # not the default, so the document is seen to follow the server's settings


def cli(data_dir: Path, *args: str, env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-m", "fieldcomms", *args, "--data-dir", str(data_dir)],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    tmp = tmp_path_factory.mktemp("opc")
    data_dir = tmp / "data"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("FIELDCOMMS_")},
           "FIELDCOMMS_MAX_TEXT_CHARS": str(TEXT_LIMIT), "FIELDCOMMS_DEMO_ADMIN": "false",
           "FIELDCOMMS_FSYNC": "false"}
    control = cli(data_dir, "user", "add", "--name", "Control", "--callsign", "CTL1", "--role", "control",
                  env=env).strip().splitlines()[-1]
    officer = cli(data_dir, "user", "add", "--name", "Officer", "--callsign", "PC1", "--role", "officer",
                  env=env).strip().splitlines()[-1]
    port = free_port()
    log = (tmp / "server.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "fieldcomms", "serve", "--port", str(port),
                             "--data-dir", str(data_dir)], env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (tmp / "server.log").read_text()
            try:
                if httpx.get(base + "/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)
        yield {"base": base, "control": control, "officer": officer, "tmp": str(tmp)}
    finally:
        stop(proc)
        log.close()


@pytest.fixture(scope="module")
def document(server: dict[str, str]) -> dict[str, Any]:
    resp = httpx.get(server["base"] + "/api/v1/openapi.json")
    assert resp.status_code == 200
    doc: dict[str, Any] = resp.json()
    return doc


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield method, path, operation


def test_every_operation_has_a_unique_operation_id_and_tags(document: dict[str, Any]) -> None:
    ids = [operation.get("operationId") for _, _, operation in operations(document)]
    assert all(isinstance(i, str) and i for i in ids), [
        f"{m.upper()} {p}" for m, p, o in operations(document) if not o.get("operationId")]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    declared = {tag["name"] for tag in document["tags"]}
    for method, path, operation in operations(document):
        assert operation.get("tags"), f"{method.upper()} {path} has no tags"
        assert set(operation["tags"]) <= declared, (method, path, operation["tags"])


def test_the_limits_in_the_schemas_are_the_servers_settings(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    defaults = Settings()
    assert schemas["UpdateCreate"]["properties"]["text"]["maxLength"] == TEXT_LIMIT != defaults.max_text_chars
    assert schemas["AlertCreate"]["properties"]["text"]["maxLength"] == TEXT_LIMIT
    assert schemas["ReportCreate"]["properties"]["text"]["maxLength"] == TEXT_LIMIT
    assert schemas["UpdateCreate"]["properties"]["photos"]["maxItems"] == defaults.max_photos_per_update
    multipart = document["paths"]["/api/v1/events/{tag}/updates"]["post"]["requestBody"]["content"]
    assert multipart["multipart/form-data"]["schema"]["properties"]["photo"]["maxItems"] == 4
    assert f"at most {TEXT_LIMIT} characters" in document["info"]["description"]


def test_a_generated_client_calls_the_server(server: dict[str, str], document: dict[str, Any]) -> None:
    tmp = Path(server["tmp"])
    spec = tmp / "openapi.json"
    spec.write_bytes(httpx.get(server["base"] + "/api/v1/openapi.json").content)
    out = tmp / PACKAGE
    shutil.rmtree(out, ignore_errors=True)
    bin_dir = str(Path(sys.executable).parent)  # the generator formats its output with ruff, from the venv
    done = subprocess.run(
        [str(Path(bin_dir) / "openapi-python-client"), "generate", "--path", str(spec), "--meta", "none",
         "--output-path", str(out)],
        env={**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")},
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    sys.path.insert(0, str(tmp))
    try:
        client_mod = importlib.import_module(PACKAGE)
        create_event = importlib.import_module(f"{PACKAGE}.api.events.create_event")
        create_update = importlib.import_module(f"{PACKAGE}.api.updates.create_update")
        list_updates = importlib.import_module(f"{PACKAGE}.api.updates.list_updates")
        models = importlib.import_module(f"{PACKAGE}.models")

        control = client_mod.AuthenticatedClient(base_url=server["base"], token=server["control"])
        event = create_event.sync(client=control, body=models.EventCreate(
            tag="#GeneratedClient", title="Made by a generated client",
            status=models.EventCreateStatus.LIVE))
        assert isinstance(event, models.Event), event
        assert event.tag == "generatedclient"

        officer = client_mod.AuthenticatedClient(base_url=server["base"], token=server["officer"])
        made = create_update.sync_detailed(
            tag=event.tag, client=officer, idempotency_key="gen-client-1",
            body=models.UpdateCreate(text="Posted through the generated client.",
                                     visibility=models.UpdateCreateVisibility.PUBLIC,
                                     location=models.LocationIn(lat=53.38, lon=-1.47)))
        assert made.status_code == 201, made.content
        assert isinstance(made.parsed, models.Update)
        # 201 says where the new update is (RFC 9110 s15.3.2).
        assert made.headers["Location"] == f"/api/v1/updates/{made.parsed.id}"

        public = client_mod.Client(base_url=server["base"])
        listed = list_updates.sync(tag=event.tag, client=public)
        assert [u.id for u in listed.items] == [made.parsed.id]
        assert listed.items[0].text == "Posted through the generated client."

        # The server's own limit, as the document states it, comes back as a typed problem.
        too_long = create_update.sync_detailed(tag=event.tag, client=officer,
                                               body=models.UpdateCreate(text="x" * (TEXT_LIMIT + 1)))
        assert too_long.status_code == 422
        assert isinstance(too_long.parsed, models.Problem)
        assert [e.field for e in too_long.parsed.errors] == ["text"]
    finally:
        sys.path.remove(str(tmp))
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(PACKAGE + ".")]:
            del sys.modules[name]
