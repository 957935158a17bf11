"""Issue 14: photos seen before. Two measurements.

1. Recall and false matches of the fingerprint (fieldcomms.fingerprints: PDQ via pdqhash, whole frame and
   trimmed frame) on a labelled set built here, nothing downloaded:
   - the sample photos in ../shared/samples/photos (every decodable one), each also cut into four quadrants
     (four more distinct pictures of real texture);
   - photos synthesised from a seed: smooth random light fields, a horizon, shapes and fine noise, so that
     they have the structure of a photo rather than of a flat test card.
   Each original gets five copies as they travel on social media: resized to a third, re-compressed as JPEG at
   quality 35, cropped by 4% on each side, padded like a phone screenshot (black bars and a status bar with
   icons, 9:19.5), brightened by 15%. Every copy goes through a JPEG encode (as an upload would).
   `fingerprint_recall`: share of copies whose original is within the match distance;
   `fingerprint_false_match_rate`: share of pairs of different originals within it. A sweep over distances
   is recorded too, so that the chosen MATCH_DISTANCE can be checked.
2. `similar_search_p99_ms_100k`: `GET /api/v1/photos/{id}/similar` against a real server (one core) holding
   100,000 fingerprinted photo records (random fingerprints, plus the labelled set), from a client on the
   other core.
"""

from __future__ import annotations

import asyncio
import http.client
import io
import json
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

from fieldcomms import fingerprints
from fieldcomms.fingerprints import MATCH_DISTANCE, QUALITY_MIN, Fingerprint
from fieldcomms.store import Store

from .util import median, percentile, server, temp_dir, user_add

SAMPLES = next((p / "shared" / "samples" / "photos" for p in Path(__file__).resolve().parents
                if (p / "shared" / "samples" / "photos").is_dir()), None)
N_SYNTHETIC = 160
N_STORED = 100_000
REQUESTS = 400
SEARCH_ONLY_SYNTHETIC = 40
RESULTS = Path(__file__).with_name("results.json")
TRANSFORMS = ("third", "jpeg35", "crop4", "screenshot", "bright15")


# ---- the labelled set ------------------------------------------------------------------------------------


def _samples() -> list[Image.Image]:
    out: list[Image.Image] = []
    if SAMPLES is None:
        return out
    for path in sorted(SAMPLES.rglob("*")):
        if not path.is_file() or path.suffix.lower() not in (".jpg", ".jpeg", ".png", ".webp"):
            continue
        try:
            im = Image.open(path)
            im.load()
        except Exception:
            continue  # the deliberately corrupted sample, and any the decoder refuses
        im = im.convert("RGB")
        if min(im.size) < 160:
            continue
        out.append(im)
        w, h = im.size
        out += [im.crop(box) for box in ((0, 0, w // 2, h // 2), (w // 2, 0, w, h // 2),
                                         (0, h // 2, w // 2, h), (w // 2, h // 2, w, h))]
    return out


def _synthetic(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    w, h = (960, 720) if seed % 3 else (720, 960)
    # A smooth light field: coarse random grids, upsampled and summed (octaves).
    field = np.zeros((h, w, 3))
    for cells, weight in ((3, 1.0), (7, 0.5), (17, 0.25), (41, 0.12)):
        grid = rng.random((cells, cells, 3))
        layer = np.asarray(Image.fromarray((grid * 255).astype(np.uint8)).resize((w, h), Image.Resampling.BICUBIC))
        field += weight * layer
    field = field / field.max() * 255
    im = Image.fromarray(field.astype(np.uint8))
    draw = ImageDraw.Draw(im)
    horizon = int(rng.uniform(0.3, 0.7) * h)
    ground = tuple(int(v) for v in rng.integers(20, 160, 3))
    draw.polygon([(0, horizon + int(rng.integers(-60, 60))), (w, horizon + int(rng.integers(-60, 60))), (w, h), (0, h)],
                 fill=ground)
    for _ in range(int(rng.integers(4, 12))):  # buildings, people, cars: boxes and ellipses
        x0, y0 = int(rng.integers(0, w - 40)), int(rng.integers(0, h - 40))
        x1, y1 = x0 + int(rng.integers(30, w // 3)), y0 + int(rng.integers(30, h // 3))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.rectangle if rng.random() < 0.6 else draw.ellipse)((x0, y0, x1, y1), fill=colour)
    noise = rng.normal(0, 6, (h, w, 3))
    return Image.fromarray(np.clip(np.asarray(im, dtype=np.float64) + noise, 0, 255).astype(np.uint8)).filter(
        ImageFilter.GaussianBlur(0.7))


def _jpeg(im: Image.Image, quality: int = 85) -> Image.Image:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    out = Image.open(io.BytesIO(buf.getvalue()))
    out.load()
    return out


def _screenshot(im: Image.Image, rng: random.Random) -> Image.Image:
    """The photo as a phone shows it: fitted to the width of a 9:19.5 screen, black above and below, a status
    bar with a clock and icons, and a row of buttons under the picture."""
    width = 1080
    height = int(width * 19.5 / 9)
    scale = width / im.width
    shown = im.resize((width, max(1, int(im.height * scale))), Image.Resampling.BILINEAR)
    canvas = Image.new("RGB", (width, height), (0, 0, 0))
    top = (height - shown.height) // 2 + rng.randint(-80, 80)
    canvas.paste(shown, (0, top))
    draw = ImageDraw.Draw(canvas)
    draw.text((40, 30), f"{rng.randint(7, 22)}:{rng.randint(0, 59):02d}", fill=(255, 255, 255))
    for i in range(3):
        draw.rectangle((width - 60 - i * 50, 30, width - 30 - i * 50, 60), fill=(230, 230, 230))
    for i in range(4):  # like, comment, share, save
        x = 60 + i * 120
        draw.ellipse((x, top + shown.height + 30, x + 50, top + shown.height + 80), outline=(255, 255, 255), width=4)
    return canvas


def transform(im: Image.Image, name: str, rng: random.Random) -> Image.Image:
    w, h = im.size
    if name == "third":
        out = im.resize((max(1, w // 3), max(1, h // 3)), Image.Resampling.LANCZOS)
    elif name == "jpeg35":
        return _jpeg(im, 35)
    elif name == "crop4":
        dx, dy = round(w * 0.04), round(h * 0.04)
        out = im.crop((dx, dy, w - dx, h - dy))
    elif name == "screenshot":
        out = _screenshot(im, rng)
    elif name == "bright15":
        out = ImageEnhance.Brightness(im).enhance(1.15)
    else:
        raise ValueError(name)
    return _jpeg(out)


def labelled_set() -> tuple[list[Fingerprint], list[tuple[int, str, Fingerprint]], dict[str, int]]:
    originals_im = _samples() + [_synthetic(seed) for seed in range(N_SYNTHETIC)]
    rng = random.Random(14)
    originals: list[Fingerprint] = []
    copies: list[tuple[int, str, Fingerprint]] = []
    counts = {"samples_and_quadrants": len(originals_im) - N_SYNTHETIC, "synthetic": N_SYNTHETIC}
    for i, im in enumerate(originals_im):
        stored = _jpeg(im, 90)
        fp = fingerprints.compute(stored)
        assert fp is not None, "pdqhash is not installed"
        originals.append(fp)
        for name in TRANSFORMS:
            copy = fingerprints.compute(transform(stored, name, rng))
            assert copy is not None
            copies.append((i, name, copy))
    return originals, copies, counts


def _bits(x: str, y: str) -> int:
    return (int(x, 16) ^ int(y, 16)).bit_count()


def _distance(a: Fingerprint, b: Fingerprint) -> int:
    """As FingerprintIndex.search compares: primary against everything, crops against primary, both ways."""
    pairs = [(x, y) for x in a.primary for y in (*b.primary, *b.crops)]
    pairs += [(x, y) for x in a.crops for y in b.primary]
    return min(_bits(x, y) for x, y in pairs)


def quality_figures(originals: list[Fingerprint], copies: list[tuple[int, str, Fingerprint]],
                    counts: dict[str, int], build_s: float) -> dict[str, Any]:
    usable = [i for i, fp in enumerate(originals) if fp.quality >= QUALITY_MIN]
    n = len(originals)
    # Recall: the copy's own original is within the distance (and both pass the quality floor).
    own = [(i, name, _distance(originals[i], fp) if fp.quality >= QUALITY_MIN and originals[i].quality >= QUALITY_MIN
            else 10**6) for i, name, fp in copies]
    pair_d = [_distance(originals[i], originals[j]) for a, i in enumerate(usable) for j in usable[a + 1:]]
    out: dict[str, Any] = {
        "fingerprint_originals": n, **{f"fingerprint_originals_{k}": v for k, v in counts.items()},
        "fingerprint_copies": len(copies), "fingerprint_low_quality_originals": n - len(usable),
        "fingerprint_match_distance": MATCH_DISTANCE, "fingerprint_set_build_s": round(build_s, 1),
    }
    sweep = {}
    for limit in (24, 31, 36, 40, 44, 48, 56):
        recall = sum(1 for _, _, d in own if d <= limit) / len(own)
        fmr = sum(1 for d in pair_d if d <= limit) / max(1, len(pair_d))
        sweep[str(limit)] = {"recall": round(recall, 4), "false_match_rate": round(fmr, 5)}
    out["fingerprint_sweep"] = sweep
    out["fingerprint_recall"] = round(sum(1 for _, _, d in own if d <= MATCH_DISTANCE) / len(own), 4)
    # Pairs of different photos: every pair of originals (quality floor applied, as the search applies it).
    out["fingerprint_false_match_rate"] = round(
        sum(1 for d in pair_d if d <= MATCH_DISTANCE) / max(1, len(pair_d)), 5)
    out["fingerprint_pairs_compared"] = len(pair_d)
    for name in TRANSFORMS:
        mine = [d for _, t, d in own if t == name]
        out[f"fingerprint_recall_{name}"] = round(sum(1 for d in mine if d <= MATCH_DISTANCE) / len(mine), 4)
    out["fingerprint_nearest_other_median"] = int(median(pair_d)) if pair_d else None
    return out


# ---- the search over 100,000 ------------------------------------------------------------------------------


async def _fill(path: Path, n: int, seed_photos: list[Fingerprint]) -> list[str]:
    store = Store(path, fsync=False, snapshot_every=10**9)
    await store.open()
    rng = random.Random(7)
    ids = []
    batch = []
    for i in range(n):
        fp = seed_photos[i] if i < len(seed_photos) else None
        doc = fp.to_doc() if fp else {"primary": [f"{rng.getrandbits(256):064x}"],
                                      "crops": [f"{rng.getrandbits(256):064x}" for _ in range(3)], "quality": 100}
        photo_id = f"{rng.getrandbits(256):064x}"
        ids.append(photo_id)
        batch.append(store.append_nowait("photo", "photos", {
            "id": photo_id, "url": f"/media/{photo_id}", "thumb_url": f"/media/{photo_id}/thumb",
            "width": 1024, "height": 768, "content_type": "image/jpeg", "taken_at": None, "location": None,
            "uploaded_by": None, "uploaded_at": "2011-03-12T10:00:00Z",
            "_fingerprint": doc}))
        if len(batch) >= 5000:
            await asyncio.gather(*batch)
            batch = []
    await asyncio.gather(*batch)
    await store.close(snapshot=True)
    return ids


def _index_times(seed_photos: list[Fingerprint]) -> dict[str, Any]:
    """The search alone (FingerprintIndex.search, in this process, on the other core): what the server's
    handler spends in the index, without HTTP, authentication and JSON."""
    index = fingerprints.FingerprintIndex()
    rng = random.Random(7)
    for i in range(N_STORED):
        fp = seed_photos[i] if i < len(seed_photos) else Fingerprint(
            (f"{rng.getrandbits(256):064x}",), tuple(f"{rng.getrandbits(256):064x}" for _ in range(3)), 100)
        index.add(str(i), fp)
    index.warm()
    times = []
    for i in range(REQUESTS + 20):
        photo_id = str(rng.randrange(len(seed_photos)) if i % 2 else rng.randrange(N_STORED))
        t0 = time.perf_counter()
        index.search(photo_id)
        if i >= 20:
            times.append((time.perf_counter() - t0) * 1000)
    return {"similar_index_search_p50_ms_100k": round(median(times), 3),
            "similar_index_search_p99_ms_100k": round(percentile(times, 99), 3)}


def search_figures(seed_photos: list[Fingerprint]) -> dict[str, Any]:
    with temp_dir("fc-bench-fp-") as d:
        ids = asyncio.run(_fill(d, N_STORED, seed_photos))
        token = user_add(d, "officer", "fpbench")
        with server(d, core=0) as (port, _proc):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            headers = {"Authorization": f"Bearer {token}"}
            rng = random.Random(3)
            times: list[float] = []
            baseline: list[float] = []
            found = 0

            def get(url: str) -> tuple[float, bytes]:
                t0 = time.perf_counter()
                conn.request("GET", url, headers=headers)
                resp = conn.getresponse()
                body = resp.read()
                elapsed = (time.perf_counter() - t0) * 1000
                if resp.status != 200:
                    raise RuntimeError(f"GET {url}: {resp.status} {body[:200]!r}")
                return elapsed, body

            for i in range(REQUESTS + 20):
                # Half the queries are photos of the labelled set (which have copies stored), half random ones.
                photo_id = ids[rng.randrange(len(seed_photos))] if i % 2 else ids[rng.randrange(len(ids))]
                elapsed, body = get(f"/api/v1/photos/{photo_id}/similar")
                # The same-run baseline: the smallest authenticated GET, interleaved, on this loaded machine.
                base, _ = get("/api/v1/me")
                found += body.count(b'"distance"')
                if i >= 20:  # warm-up
                    times.append(elapsed)
                    baseline.append(base)
    index = _index_times(seed_photos)
    return {**index, "similar_search_p99_ms_100k": round(percentile(times, 99), 2),
            "similar_search_p50_ms_100k": round(median(times), 2), "similar_search_requests": len(times),
            "similar_baseline_me_p50_ms": round(median(baseline), 2),
            "similar_baseline_me_p99_ms": round(percentile(baseline, 99), 2),
            "similar_search_results_returned": found, "similar_search_stored": N_STORED,
            "load_average_1m": round(os.getloadavg()[0], 2)}


def run() -> dict[str, Any]:
    """`FC_BENCH_FP_SEARCH_ONLY=1`: measure the search only (a minute instead of ten). The labelled set's figures
    (recall, false matches: they depend on the fingerprint, not on the index) are then carried over from the
    last full run in bench/results.json, with `fingerprint_set_measured_at` saying when that was; the stored
    photos are a small labelled set (SEARCH_ONLY_SYNTHETIC originals and their copies) plus random ones."""
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})
    if os.environ.get("FC_BENCH_FP_SEARCH_ONLY") == "1":
        previous = json.loads(RESULTS.read_text()).get("fingerprints", {}) if RESULTS.exists() else {}
        out = {k: v for k, v in previous.items() if k.startswith("fingerprint_")}
        out["fingerprint_set_measured_at"] = previous.get("fingerprint_set_measured_at") or previous.get("measured_at")
        seeds: list[Fingerprint] = []
        rng = random.Random(14)
        for seed in range(SEARCH_ONLY_SYNTHETIC):
            stored = _jpeg(_synthetic(seed), 90)
            seeds += [fp for fp in [fingerprints.compute(stored)] + [
                fingerprints.compute(transform(stored, name, rng)) for name in TRANSFORMS] if fp is not None]
        out["similar_search_mode"] = "search only (labelled-set figures carried over)"
        out.update(search_figures(seeds))
        return out
    t0 = time.perf_counter()
    originals, copies, counts = labelled_set()
    out = quality_figures(originals, copies, counts, time.perf_counter() - t0)
    out["fingerprint_set_measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    out["similar_search_mode"] = "full"
    # Stored: the labelled originals and their copies (so that searches find something), then random ones.
    out.update(search_figures(originals + [fp for _, _, fp in copies]))
    return out
