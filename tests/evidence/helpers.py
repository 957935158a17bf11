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


def rows_containing(database_url: str, needle: bytes) -> list[str]:
    """`table: row` for every row of every table of the database whose text form holds `needle`, as text or
    inside a bytea column (which a row's text form shows as hex)."""
    import psycopg
    from psycopg import sql

    text, hexed = needle.decode(errors="replace"), needle.hex()
    found = []
    with psycopg.connect(database_url) as conn:
        tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        assert "fc_changes" in tables and "fc_state" in tables, tables
        for table in tables:
            query = sql.SQL("SELECT t::text FROM {} t").format(sql.Identifier(table))
            for (row,) in conn.execute(query):
                if text in row or hexed in row.lower():
                    found.append(f"{table}: {row[:120]}")
    return found
