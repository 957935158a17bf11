"""The deployment's VAPID key (RFC 8292): made once, at the first start, and kept in the data directory.

Browsers bind each push subscription to the public key they were given (`applicationServerKey`), so a key
that changed would silently end every subscription: it is made once and never replaced. The private key file
is readable by the server's user only (0600).
"""

from __future__ import annotations

import base64
import contextlib
import os
import stat
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from py_vapid import Vapid

KEY_FILE = "vapid_private.pem"
JWT_LIFETIME_S = 12 * 3600  # RFC 8292 allows at most 24 h
RESIGN_BEFORE_S = 3600  # a cached token is signed again when less than this is left of it


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def load_or_create(data_dir: Path) -> Vapid:
    """The key kept in `data_dir`, made there first if there is none (blocking file work: call off the loop)."""
    path = data_dir / KEY_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        key = Vapid()
        key.generate_keys()
        tmp = data_dir / f".{KEY_FILE}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(key.private_pem())
                fh.flush()
                os.fsync(fh.fileno())
            with contextlib.suppress(FileExistsError):  # another process made one meanwhile: theirs is kept
                os.link(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        os.chmod(path, 0o600)  # a copy restored with looser rights is tightened
    return Vapid.from_pem(path.read_bytes())


def public_key(key: Vapid) -> str:
    """The public key as browsers take it: the uncompressed P-256 point, base64url without padding."""
    raw = key.public_key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return b64url(raw)


class VapidSigner:
    """`Authorization: vapid t=<JWT>, k=<key>` per push service origin, signed once and reused until near its
    expiry: signing is the costliest part of a push after the encryption, and 1,000 pushes usually go to one or
    two origins. Used from the sending thread only."""

    def __init__(self, key: Vapid, contact: str) -> None:
        self.key = key
        self.contact = contact
        self._cache: dict[str, tuple[float, str]] = {}

    def authorization(self, origin: str) -> str:
        now = time.time()
        cached = self._cache.get(origin)
        if cached is not None and cached[0] - now > RESIGN_BEFORE_S:
            return cached[1]
        expires = int(now) + JWT_LIFETIME_S
        header: str = self.key.sign({"aud": origin, "sub": self.contact, "exp": expires})["Authorization"]
        self._cache[origin] = (expires, header)
        return header
