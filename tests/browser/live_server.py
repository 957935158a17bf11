"""A real `fieldcomms serve` process for the browser tests, and a small synchronous HTTP client to seed it.

The server runs as users run it: the command line, a data directory, settings from the environment. Users are
made with `fieldcomms user add` before it starts (the running server holds the directory's lock).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from procs import free_port, stop

Json = dict[str, Any]


def cli(data_dir: Path, env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "fieldcomms", *args, "--data-dir", str(data_dir)],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"fieldcomms {' '.join(args)}: {done.stderr}"
    return done.stdout


def add_user(data_dir: Path, env: dict[str, str], callsign: str, role: str) -> str:
    """The new user's token: alone on the last line of standard output."""
    return cli(data_dir, env, "user", "add", "--name", f"Test {callsign}", "--callsign", callsign,
               "--role", role).strip().splitlines()[-1]


@dataclass
class LiveServer:
    data_dir: Path
    log_path: Path
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    tokens: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "fieldcomms", "serve", "--host", "127.0.0.1", "--port", str(self.port),
             "--data-dir", str(self.data_dir)],
            env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited ({self.process.returncode}):\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"the server did not answer /healthz within {timeout} s:\n{self.log()}")

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # ---- HTTP ----------------------------------------------------------------------------------------

    def request(self, method: str, path: str, token: str | None = None, body: Any = None,
                *, data: bytes | None = None, content_type: str | None = None) -> tuple[int, Any]:
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if body is not None:
            data = json.dumps(body).encode()
            content_type = "application/json"
        if content_type:
            headers["Content-Type"] = content_type
        if method == "POST":
            headers["Idempotency-Key"] = uuid.uuid4().hex
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=15) as resp:
                raw = resp.read()
                status = resp.status
        except urllib.error.HTTPError as exc:
            raw, status = exc.read(), exc.code
        return status, (json.loads(raw) if raw else None)

    def ok(self, method: str, path: str, token: str | None = None, body: Any = None, status: int = 200,
           **kw: Any) -> Any:
        got, answer = self.request(method, path, token, body, **kw)
        assert got == status, f"{method} {path}: {got} {answer}"
        return answer

    def upload_photo(self, token: str, colour: tuple[int, int, int] = (90, 120, 160)) -> Json:
        from PIL import Image, ImageDraw

        image = Image.new("RGB", (800, 600), colour)
        draw = ImageDraw.Draw(image)
        draw.rectangle((0, 380, 800, 600), fill=(70, 70, 75))  # a roof line
        draw.rectangle((120, 200, 300, 380), fill=(150, 110, 90))
        buf = io.BytesIO()
        image.save(buf, "JPEG", quality=80)
        boundary = "fieldcomms" + uuid.uuid4().hex
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"roof.jpg\"\r\n"
                f"Content-Type: image/jpeg\r\n\r\n").encode() + buf.getvalue() + f"\r\n--{boundary}--\r\n".encode()
        photo: Json = self.ok("POST", "/api/v1/photos", token, data=body,
                              content_type=f"multipart/form-data; boundary={boundary}", status=201)
        return photo


def server_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIELDCOMMS_")}
    env.update({f"FIELDCOMMS_{k.upper()}": v for k, v in settings.items()})
    return env
