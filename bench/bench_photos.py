"""Issue 3: photo intake throughput, and that image work never blocks the event loop.

A real server on core 0; this process, on core 1, keeps two uploads of a 12-megapixel JPEG (4000 x 3000, noisy
enough to weigh what a phone sends) in flight through POST /api/v1/photos, while a third task polls /healthz
every 20 ms. Each upload differs by a counter inside its EXIF block, so its content hash is new and the server
really decodes, re-encodes and stores it. A baseline of /healthz without uploads is measured first.
"""

from __future__ import annotations

import asyncio
import io
import os
import time
from typing import Any

import aiohttp
from PIL import Image, ImageChops, TiffImagePlugin

from .util import median, percentile, poll_healthz, server, temp_dir, user_add

WIDTH, HEIGHT = 4000, 3000
IN_FLIGHT = 2
SECONDS = 20.0
IDLE_SECONDS = 5.0
POLL_S = 0.020
MARK = b"fieldcomms-bench-00000000"  # in the EXIF ImageDescription; the digits are rewritten per upload
BOUNDARY = "fieldcommsbenchboundary"


def make_jpeg() -> bytes:
    """A phone-like 12 MP JPEG: gradients with per-channel sensor noise and some detail, EXIF with GPS."""
    channels = []
    for angle in (0, 90, 45):
        base = Image.linear_gradient("L").rotate(angle).resize((WIDTH, HEIGHT))
        channels.append(ImageChops.add(base, Image.effect_noise((WIDTH, HEIGHT), 12), 1.0, -128))
    detail = Image.effect_mandelbrot((WIDTH, HEIGHT), (-2.0, -1.2, 1.0, 1.2), 80)
    im = Image.blend(Image.merge("RGB", channels), Image.merge("RGB", [detail, detail.rotate(180), detail]), 0.3)
    exif = Image.Exif()
    exif[0x010E] = MARK.decode()  # ImageDescription
    exif[0x010F], exif[0x0110] = "FieldCam", "Handset 9000"
    R = TiffImagePlugin.IFDRational
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2], gps[3], gps[4] = "N", (R(53, 1), R(22, 1), R(4404, 100)), "W", (R(1, 1), R(28, 1), R(4044, 100))
    exif.get_ifd(0x8769)[0x9003] = "2011:03:12 10:02:00"
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90, exif=exif)
    return buf.getvalue()


class Uploads:
    """Multipart bodies that differ only in the counter inside the EXIF block."""

    def __init__(self, jpeg: bytes) -> None:
        head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"IMG.jpg\"\r\n"
                f"Content-Type: image/jpeg\r\n\r\n").encode()
        self.body = bytearray(head + jpeg + f"\r\n--{BOUNDARY}--\r\n".encode())
        self.at = self.body.index(MARK) + len(MARK) - 8
        self.count = 0
        self.content_type = f"multipart/form-data; boundary={BOUNDARY}"

    def next(self) -> bytes:
        self.count += 1
        self.body[self.at : self.at + 8] = b"%08d" % self.count
        return bytes(self.body)


async def upload_once(session: aiohttp.ClientSession, base: str, token: str, uploads: Uploads) -> float:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": uploads.content_type}
    body = uploads.next()
    started = time.perf_counter()
    async with session.post(f"{base}/api/v1/photos", data=body, headers=headers) as resp:
        text = await resp.text()
        if resp.status != 201:
            raise RuntimeError(f"upload answered {resp.status}: {text[:300]}")
    return time.perf_counter() - started


async def uploader(session: aiohttp.ClientSession, base: str, token: str, uploads: Uploads,
                   stop: asyncio.Event, times: list[float]) -> None:
    while not stop.is_set():
        times.append(await upload_once(session, base, token, uploads))


async def measure(port: int, officer: str, control: str, jpeg: bytes) -> dict[str, Any]:
    base = f"http://127.0.0.1:{port}"
    uploads = Uploads(jpeg)
    # Separate sessions: the health probe never queues behind an upload on the client side.
    async with aiohttp.ClientSession() as probe, aiohttp.ClientSession() as api:
        async with api.post(f"{base}/api/v1/events", json={"tag": "benchphotos", "title": "bench", "status": "live"},
                            headers={"Authorization": f"Bearer {control}"}) as resp:
            assert resp.status == 201, await resp.text()
        for _ in range(IN_FLIGHT):  # load the codecs and start the server's thread pool
            await upload_once(api, base, officer, uploads)

        stop = asyncio.Event()
        idle_task = asyncio.create_task(poll_healthz(probe, base, stop, POLL_S))
        await asyncio.sleep(IDLE_SECONDS)
        stop.set()
        idle = await idle_task

        stop = asyncio.Event()
        times: list[float] = []
        probe_task = asyncio.create_task(poll_healthz(probe, base, stop, POLL_S))
        started = time.perf_counter()
        workers = [asyncio.create_task(uploader(api, base, officer, uploads, stop, times)) for _ in range(IN_FLIGHT)]
        await asyncio.sleep(SECONDS)
        stop.set()
        await asyncio.gather(*workers)
        elapsed = time.perf_counter() - started
        busy = await probe_task
    return {
        "photo_megapixels": WIDTH * HEIGHT / 1e6,
        "photo_mb": round(len(jpeg) / 1e6, 2),
        "photos_per_s": round(len(times) / elapsed, 2),
        "photo_upload_p50_s": round(median(times), 3),
        "healthz_p50_ms_under_photos": round(percentile(busy, 50), 2),
        "healthz_p99_ms_under_photos": round(percentile(busy, 99), 2),
        "healthz_max_ms_under_photos": round(max(busy), 2),
        "healthz_samples_under_photos": len(busy),
        "healthz_p50_ms_idle": round(percentile(idle, 50), 2),
        "healthz_p99_ms_idle": round(percentile(idle, 99), 2),
    }


def run() -> dict[str, Any]:
    jpeg = make_jpeg()
    before = os.sched_getaffinity(0)
    with temp_dir("fc-bench-photos-") as d:
        officer = user_add(d / "data", "officer", "bench1")
        control = user_add(d / "data", "control", "benchc")
        with server(d / "data", core=0) as (port, _):
            if len(before) > 1:
                os.sched_setaffinity(0, {1})  # the load generator on the other core
            try:
                return asyncio.run(measure(port, officer, control, jpeg))
            finally:
                os.sched_setaffinity(0, before)
