"""deploy/: the systemd unit and the nginx configuration, run for real.

Two `fieldcomms serve` workers on a PostgreSQL database of their own, started with the settings of
deploy/fieldcomms.env (the database, ports and directories replaced), behind Debian's nginx running
deploy/nginx-fieldcomms.conf as a private process (`nginx -p PREFIX -c CONF`, its pid, logs and temporary
files in a temporary directory, on a free port; its upstream lists the two workers). Through nginx: a photo
larger than nginx's default body limit uploads and downloads; an update posted through nginx arrives on a
stream read through nginx within a second, frame by frame (the stream is not buffered), whichever worker each
request reaches; both workers serve; and the per-address report limit sees the client behind nginx, not nginx,
and ignores an X-Forwarded-For the client wrote. The unit passes `systemd-analyze verify`.

nginx is required: in CI (`CI=true`) a missing nginx fails this test instead of skipping it (`.ci/run`
installs it, as it installs Chromium and PostgreSQL).
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image
from procs import free_port

from fieldcomms.app import max_request_bytes
from fieldcomms.config import Settings

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
UNIT = DEPLOY / "fieldcomms.service"
ENV_FILE = DEPLOY / "fieldcomms.env"
NGINX_CONF = DEPLOY / "nginx-fieldcomms.conf"
TAG = "deploytest"
START_TIMEOUT = 60.0


def require(what: str, found: str | None) -> str:
    if found is None:
        message = f"{what} is not installed (apt-get install -y {what})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; in CI a skipped deployment test is a failure")
        pytest.skip(message)
    return found


def nginx_binary() -> str:
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)
    return require("nginx", found)


def env_file_settings() -> dict[str, str]:
    """deploy/fieldcomms.env as systemd reads it (KEY=value lines; comments and blank lines skipped)."""
    out = {}
    for line in ENV_FILE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


# ---- the files themselves -------------------------------------------------------------------------------


def location_block(conf: str, pattern: str) -> str:
    start = conf.index(f"location {pattern}")
    return conf[start:conf.index("}", start)]


def seconds(value: str) -> float:
    m = re.fullmatch(r"(\d+)(ms|s|m|h)?", value)
    assert m, value
    return int(m.group(1)) * {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600}[m.group(2)]


def test_the_nginx_configuration_matches_the_server() -> None:
    conf = NGINX_CONF.read_text()
    stream = location_block(conf, "~ ^/api/v1/events/[^/]+/stream$")
    assert re.search(r"^\s*proxy_buffering off;", stream, re.M)
    read_timeout = re.search(r"proxy_read_timeout (\S+);", stream)
    assert read_timeout and seconds(read_timeout.group(1)) > 2 * Settings().sse_keepalive_s
    body = re.search(r"^\s*client_max_body_size (\d+)m;", conf, re.M)
    assert body, "client_max_body_size"
    limit = int(body.group(1)) * 1024 * 1024
    assert max_request_bytes(Settings()) <= limit <= max_request_bytes(Settings()) + 1024 * 1024
    assert re.search(r"^\s*proxy_http_version 1\.1;", conf, re.M)
    assert re.search(r'^\s*proxy_set_header Connection "";', conf, re.M)
    assert re.search(r"^\s*keepalive \d+;", conf, re.M)
    assert "X-Forwarded-For $proxy_add_x_forwarded_for" in conf
    # The environment file trusts the address nginx connects from, and parses as settings.
    env = env_file_settings()
    assert "127.0.0.1" in env["FIELDCOMMS_TRUSTED_PROXIES"].split(",")
    from fieldcomms.config import load_settings

    settings = load_settings(env=env)
    assert settings.database_url and settings.workers > 1 and settings.host == "127.0.0.1"


def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    """`systemd-analyze verify` checks every key and value (it warns, exit 0, about an unknown key or a bad
    value: any output is a failure here), and the program named in ExecStart: pointed at this checkout's."""
    analyze = require("systemd-analyze", shutil.which("systemd-analyze"))
    program = Path(sys.executable).with_name("fieldcomms")
    assert program.exists(), program
    text = UNIT.read_text()
    assert "ExecStart=/opt/fieldcomms/.venv/bin/fieldcomms serve" in text
    for needed in ("EnvironmentFile=/etc/fieldcomms/fieldcomms.env", "Restart=on-failure", "User=fieldcomms",
                   "NoNewPrivileges=yes", "ProtectSystem=strict"):
        assert needed in text, needed
    unit = tmp_path / "fieldcomms.service"
    unit.write_text(text.replace("/opt/fieldcomms/.venv/bin/fieldcomms", str(program)))
    done = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path)
    assert done.returncode == 0 and done.stdout + done.stderr == "", done.stdout + done.stderr
    security = subprocess.run([analyze, "security", "--offline=true", str(unit)], capture_output=True, text=True,
                              timeout=60, cwd=tmp_path)
    level = re.search(r"Overall exposure level for \S+: ([\d.]+)", security.stdout)
    assert level and float(level.group(1)) <= 2.0, security.stdout[-2000:] + security.stderr


# ---- two workers behind nginx -----------------------------------------------------------------------------


class Worker:
    def __init__(self, env: dict[str, str], tmp: Path, n: int) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.err = tmp / f"worker{n}.err"
        with open(tmp / f"worker{n}.out", "wb") as out, open(self.err, "wb") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "fieldcomms", "serve"],
                                         env={**env, "FIELDCOMMS_PORT": str(self.port)}, stdout=out, stderr=err,
                                         cwd=tmp)

    def access(self) -> list[dict[str, Any]]:
        lines = []
        for line in self.err.read_text().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if "route" in entry:
                lines.append(entry)
        return lines


def nginx_conf(prefix: Path, port: int, upstreams: list[int]) -> Path:
    """The shipped server block with its upstream servers and listen port replaced, inside a main
    configuration whose pid, logs and temporary files are all under `prefix`."""
    site = NGINX_CONF.read_text()
    servers = "".join(f"    server 127.0.0.1:{p};\n" for p in upstreams)
    site, n = re.subn(r"^    server 127\.0\.0\.1:8080;\n", servers, site, flags=re.M)
    assert n == 1, "the upstream's server line"
    site, n = re.subn(r"^    listen 80;\n", f"    listen 127.0.0.1:{port};\n", site, flags=re.M)
    assert n == 1, "listen 80"
    site, n = re.subn(r"^    listen \[::\]:80;\n", "", site, flags=re.M)
    assert n == 1, "listen [::]:80"
    (prefix / "fieldcomms.conf").write_text(site)
    user = "user nobody nogroup;\n" if os.geteuid() == 0 else ""  # root starts it; workers are unprivileged
    main = f"""{user}worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 1024; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {prefix}/fieldcomms.conf;
}}
"""
    conf = prefix / "nginx.conf"
    conf.write_text(main)
    return conf


def start_nginx(nginx: str, prefix: Path, conf: Path) -> subprocess.Popen[bytes]:
    """`nginx -t` first (the configuration must be valid as shipped), then nginx in the foreground."""
    # -e: the log nginx opens before it reads the configuration (else Debian's /var/log/nginx, root's only).
    args = [nginx, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")]
    check = subprocess.run([*args, "-t"], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.fixture
def database(pg_url: str) -> str:
    """The run's PostgreSQL database, emptied (tests/conftest.py), for the workers behind nginx."""
    return pg_url


@pytest.fixture
def prefix() -> Iterator[Path]:
    """nginx's directory: under /tmp and traversable, since nginx's unprivileged workers write its temporary
    files there when the test runs as root (nginx creates and hands them over itself)."""
    path = Path(tempfile.mkdtemp(prefix="fc-nginx-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def photo_bytes() -> bytes:
    """A JPEG of a few megabytes: more than nginx takes by default (client_max_body_size 1m)."""
    image = Image.frombytes("RGB", (1600, 1200), os.urandom(1600 * 1200 * 3))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=95)
    return out.getvalue()


async def wait_healthy(session: aiohttp.ClientSession, url: str, procs: list[subprocess.Popen[bytes]],
                       logs: list[Path]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        for proc, log in zip(procs, logs, strict=True):
            if proc.poll() is not None:
                raise AssertionError(f"exited with {proc.returncode}: {log.read_text()[-3000:]}")
        try:
            async with session.get(url) as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.05)  # polling for readiness, not timing anything
    raise AssertionError(f"{url} not healthy within {START_TIMEOUT} s")


def user_add(env: dict[str, str], tmp: Path, callsign: str, role: str) -> str:
    done = subprocess.run([sys.executable, "-m", "fieldcomms", "user", "add", "--name", callsign, "--callsign",
                           callsign, "--role", role], env=env, capture_output=True, text=True, timeout=60, cwd=tmp)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1].strip()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def next_frame(content: aiohttp.StreamReader, within: float) -> bytes:
    """The next SSE frame that is not a keep-alive comment."""
    async with asyncio.timeout(within):
        while True:
            frame = await content.readuntil(b"\n\n")
            if not frame.startswith(b":"):
                return frame


async def test_two_workers_behind_nginx(database: str, prefix: Path, tmp_path: Path) -> None:
    nginx = nginx_binary()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIELDCOMMS_")}
    env.update(env_file_settings())
    env.update({"FIELDCOMMS_DATABASE_URL": database, "FIELDCOMMS_WORKERS": "1",
                "FIELDCOMMS_DATA_DIR": str(tmp_path / "data"), "FIELDCOMMS_DEMO_ADMIN": "false",
                "FIELDCOMMS_REPORT_BURST": "2", "FIELDCOMMS_REPORT_RATE_PER_MINUTE": "0.01",
                "PYTHONUNBUFFERED": "1"})
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    officer = user_add(env, tmp_path, "pc1", "officer")
    control = user_add(env, tmp_path, "ctl1", "control")
    workers = [Worker(env, tmp_path, n) for n in range(2)]
    conf = nginx_conf(prefix, port, [w.port for w in workers])
    proxy = start_nginx(nginx, prefix, conf)
    # The client connects from 127.0.0.2, nginx from 127.0.0.1 (trusted_proxies): the workers must see .2.
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0), limit=0)
    try:
        async with aiohttp.ClientSession(connector=connector) as session:
            for w in workers:
                await wait_healthy(session, w.base + "/healthz", [w.proc], [w.err])
            await wait_healthy(session, base + "/healthz", [proxy, *(w.proc for w in workers)],
                               [prefix / "error.log", *(w.err for w in workers)])
            await run_through_nginx(session, base, workers, officer, control)
    finally:
        stop(proxy, signal.SIGQUIT)  # nginx's graceful stop
        for w in workers:
            stop(w.proc)
    assert proxy.returncode == 0


async def on_every_worker(session: aiohttp.ClientSession, workers: list[Worker], path: str, token: str) -> None:
    """Made through one worker, a change reaches the others within a second (API.md): wait for it there,
    straight from each worker, before asking for it through nginx (which may pick either)."""
    for w in workers:
        deadline = time.monotonic() + 5
        while True:
            async with session.get(w.base + path, headers=bearer(token)) as resp:
                if resp.status == 200:
                    break
            assert time.monotonic() < deadline, f"{path} did not reach the worker on {w.port}"
            await asyncio.sleep(0.05)  # polling for the change, not timing anything


async def run_through_nginx(session: aiohttp.ClientSession, base: str, workers: list[Worker], officer: str,
                            control: str) -> None:
    async with session.post(f"{base}/api/v1/events", json={"tag": TAG, "title": "Behind nginx", "status": "live"},
                            headers=bearer(control)) as resp:
        assert resp.status == 201, await resp.text()
    await on_every_worker(session, workers, f"/api/v1/events/{TAG}", control)

    # A photo of several megabytes, through nginx, and back.
    data = photo_bytes()
    assert len(data) > 2 * 1024 * 1024
    form = aiohttp.FormData()
    form.add_field("file", data, filename="big.jpg", content_type="image/jpeg")
    async with session.post(f"{base}/api/v1/photos", data=form, headers=bearer(officer)) as resp:
        assert resp.status == 201, await resp.text()
        photo = await resp.json()
    await on_every_worker(session, workers, f"/api/v1/photos/{photo['id']}", officer)
    for _ in range(2):  # round robin: from each worker (the file is in the shared media directory)
        async with session.get(base + photo["url"], headers=bearer(officer)) as resp:
            assert resp.status == 200, await resp.text()
            with Image.open(io.BytesIO(await resp.read())) as shown:
                assert shown.format == "JPEG" and shown.size == (1600, 1200)

    # The stream through nginx: `retry` at once, then each update within a second of its 201.
    async with session.get(f"{base}/api/v1/events/{TAG}/stream", headers=bearer(control),
                           timeout=aiohttp.ClientTimeout(total=None, sock_read=30)) as stream:
        assert stream.status == 200
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        assert "Content-Length" not in stream.headers
        assert await asyncio.wait_for(stream.content.readuntil(b"\n\n"), 5) == b"retry: 3000\n\n"
        delays = []
        for k in range(6):
            body = {"text": f"Update {k} through nginx", "visibility": "public"}
            if k == 0:
                body["photos"] = [photo["id"]]
            async with session.post(f"{base}/api/v1/events/{TAG}/updates", json=body,
                                    headers={**bearer(officer), "Idempotency-Key": f"nginx-{k}"}) as resp:
                assert resp.status == 201, await resp.text()
                update = await resp.json()
            acked = time.monotonic()
            frame = await next_frame(stream.content, 5)
            delays.append(time.monotonic() - acked)
            # One frame, whole, for this update: nothing held back waiting for more bytes.
            head, _, data_line = frame.partition(b"\ndata: ")
            assert head == b"id: %d\nevent: update" % update["seq"], frame[:200]
            assert json.loads(data_line)["id"] == update["id"]
        print(f"update 201 -> frame through nginx: {', '.join(f'{d * 1000:.1f}' for d in delays)} ms")
        assert max(delays) < 1.0, delays

    # Both workers served through nginx (balanced), and saw the client's address, not nginx's. (The test
    # only GETs /healthz and the event straight from a worker; every POST and stream went through nginx.)
    for w in workers:
        served = [e for e in w.access() if e.get("method") == "POST" or e.get("path", "").endswith("/stream")]
        assert served, f"worker on {w.port} served nothing through nginx"
        assert {e["remote"] for e in served} == {"127.0.0.2"}, {e["remote"] for e in served}

    # The report limit (a burst of 2 for the deployment) is per client address behind nginx: the client's
    # own forged X-Forwarded-For changes nothing, and another client is not limited with it.
    report = {"text": "Crowd surge at the gates"}
    spoof = {"X-Forwarded-For": "203.0.113.9"}
    statuses = []
    for k in range(3):
        async with session.post(f"{base}/api/v1/events/{TAG}/reports", json=report,
                                headers=spoof if k == 2 else {}) as resp:
            statuses.append(resp.status)
    assert statuses == [202, 202, 429], statuses
    other = aiohttp.TCPConnector(local_addr=("127.0.0.3", 0))
    async with aiohttp.ClientSession(connector=other) as session3, \
            session3.post(f"{base}/api/v1/events/{TAG}/reports", json=report) as resp:
        assert resp.status == 202, await resp.text()
