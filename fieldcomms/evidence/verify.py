"""`fieldcomms verify FILE.zip [--key KEY]`: check an evidence bundle offline.

Every file against the manifest (present, same size, same SHA-256, nothing extra), and the manifest against its
Ed25519 signature, by the key given with --key (the deployment's, obtained beforehand from
`GET /api/v1/chain/key`) or else by the key the bundle carries (which only shows the bundle is intact, not who
made it: the summary says which). The first failure is reported on one line, naming the file."""

from __future__ import annotations

import hashlib
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature

from .bundle import FORMAT
from .signing import fingerprint, load_public

SIGNED = ("manifest.json", "manifest.sig", "signing-key.pub")


@dataclass
class Verdict:
    ok: bool
    message: str


def _fail(message: str) -> Verdict:
    return Verdict(False, message)


def _read(zf: zipfile.ZipFile, name: str) -> bytes:
    with zf.open(name) as f:
        return f.read()


def verify_bundle(path: Path, key_file: Path | None = None) -> Verdict:
    try:
        zf = zipfile.ZipFile(path)
    except FileNotFoundError:
        return _fail(f"{path}: no such file")
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        return _fail(f"{path}: not a readable zip file (truncated or not a zip: {exc})")
    with zf:
        names = set(zf.namelist())
        for name in SIGNED:
            if name not in names:
                return _fail(f"{name}: missing from the bundle")
        try:
            manifest_raw = _read(zf, "manifest.json")
            signature = _read(zf, "manifest.sig")
            bundled_key = _read(zf, "signing-key.pub")
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as exc:
            return _fail(f"manifest.json: unreadable ({exc})")
        try:
            if key_file is not None:
                key = load_public(key_file.read_bytes())
                source = f"the key in {key_file}"
            else:
                key = load_public(bundled_key)
                source = "the key in the bundle (pass --key with the deployment's key to check who signed it)"
        except (OSError, ValueError) as exc:
            where = str(key_file) if key_file is not None else "signing-key.pub"
            return _fail(f"{where}: not a usable Ed25519 public key ({exc})")
        try:
            key.verify(signature, manifest_raw)
        except InvalidSignature:
            return _fail("manifest.sig: the signature does not match manifest.json"
                         + (f" for {source.split(' (')[0]}" if key_file is not None else ""))
        try:
            manifest: Any = orjson.loads(manifest_raw)
            files = manifest["files"]
            if manifest.get("format") != FORMAT or not isinstance(files, list):
                raise ValueError(manifest.get("format"))
        except (ValueError, KeyError, TypeError):
            return _fail(f"manifest.json: not a {FORMAT} manifest")
        listed: set[str] = set()
        for entry in files:
            try:
                name, want, size = str(entry["path"]), str(entry["sha256"]), int(entry["bytes"])
            except (KeyError, TypeError, ValueError):
                return _fail("manifest.json: a file entry lacks path, sha256 or bytes")
            listed.add(name)
            if name not in names:
                return _fail(f"{name}: listed in the manifest but missing from the bundle")
            digest = hashlib.sha256()
            got = 0
            try:
                with zf.open(name) as f:
                    while piece := f.read(1 << 20):
                        digest.update(piece)
                        got += len(piece)
            except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as exc:
                return _fail(f"{name}: damaged in the zip ({exc})")
            if got != size or digest.hexdigest() != want:
                return _fail(f"{name}: its SHA-256 does not match the manifest (altered)")
        extra = sorted(names - listed - set(SIGNED))
        if extra:
            return _fail(f"{extra[0]}: in the bundle but not in the manifest")
        head = manifest.get("chain_head") or {}
        return Verdict(True, f"OK: {len(files)} files match manifest.json, signed by {fingerprint(key)} "
                             f"({source}); event #{manifest.get('event')}, generated {manifest.get('generated_at')} "
                             f"by {(manifest.get('generated_by') or {}).get('callsign')}, chain head seq "
                             f"{head.get('seq')} {head.get('hash') or ''}".rstrip())
