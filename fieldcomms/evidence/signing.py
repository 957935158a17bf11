"""The deployment's Ed25519 signing key: made at first start, kept in the data directory with mode 0600.

Evidence bundles carry an Ed25519 signature of their manifest; the public half is served at
`GET /api/v1/chain/key` and put in every bundle as `signing-key.pub` (PEM), so a bundle can be checked
offline against the key a court was given beforehand.
"""

from __future__ import annotations

import base64
import hashlib
import os
import pathlib

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

KEY_FILE = "signing-key.pem"


class SigningKey:
    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.public = private.public_key()

    @classmethod
    def load_or_create(cls, data_dir: pathlib.Path) -> SigningKey:
        """The key in `data_dir`, made now (mode 0600, atomically: two processes starting at once agree) if
        there is none."""
        path = pathlib.Path(data_dir) / KEY_FILE
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            pem = Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
            tmp = path.with_name(f".{KEY_FILE}.{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(pem)
                    f.flush()
                    os.fsync(f.fileno())
                try:
                    os.link(tmp, path)  # fails if another process made the key first: theirs wins
                except FileExistsError:
                    pass
            finally:
                os.unlink(tmp)
            dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        private = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(private, Ed25519PrivateKey):
            raise ValueError(f"{path} is not an Ed25519 private key")
        return cls(private)

    def sign(self, data: bytes) -> bytes:
        return self._private.sign(data)

    def public_pem(self) -> bytes:
        return public_pem(self.public)

    def public_raw(self) -> bytes:
        return self.public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    def describe(self) -> dict[str, str]:
        """What `GET /api/v1/chain/key` answers."""
        raw = self.public_raw()
        return {"algorithm": "Ed25519", "public_key": base64.urlsafe_b64encode(raw).rstrip(b"=").decode(),
                "pem": self.public_pem().decode(), "fingerprint": fingerprint(self.public)}


def public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def fingerprint(key: Ed25519PublicKey) -> str:
    """SHA-256 of the raw public key, hex: short enough to read out over the phone."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def load_public(data: bytes) -> Ed25519PublicKey:
    """A public key from PEM, or from the base64 of its 32 raw bytes (as GET /chain/key gives it)."""
    text = data.strip()
    if text.startswith(b"-----BEGIN"):
        key = serialization.load_pem_public_key(text)
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("not an Ed25519 public key")
        return key
    raw = base64.urlsafe_b64decode(text + b"=" * (-len(text) % 4))
    return Ed25519PublicKey.from_public_bytes(raw)
