"""Shared by the evidence tests: the sample photos, uploading them, and scanning a directory for bytes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import FormData
from aiohttp.test_utils import TestClient
from conftest import auth


def samples_dir() -> Path:
    """../shared/samples/photos beside the checkout (or any parent of it): where the sample photos live."""
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "shared" / "samples" / "photos"
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("the sample photos (shared/samples/photos) are not beside this checkout")


def sample(name: str = "DSCN0010.jpg") -> bytes:
    return (samples_dir() / name).read_bytes()


async def upload(client: TestClient, token: str, data: bytes, name: str = "photo.jpg") -> dict[str, Any]:
    form = FormData()
    form.add_field("file", data, filename=name, content_type="image/jpeg")
    resp = await client.post("/api/v1/photos", data=form, headers=auth(token))
    assert resp.status == 201, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


def files_containing(root: Path, needle: bytes) -> list[Path]:
    """Every file under root whose bytes contain needle (plain or, for compressed history, decompressed)."""
    import gzip
    import lzma
    import zlib

    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        variants = [data]
        for decompress in (gzip.decompress, lzma.decompress, zlib.decompress):
            try:
                variants.append(decompress(data))
            except Exception:  # not in that format
                pass
        try:
            import zstandard

            variants.append(zstandard.ZstdDecompressor().decompress(data, max_output_size=1 << 30))
        except Exception:  # not installed, or not zstd
            pass
        if any(needle in v for v in variants):
            found.append(path)
    return found
