"""Original photos: the uploaded bytes exactly as they came, kept apart from the stripped copies.

Stored like the public copies (content hash, temporary file, fsync, rename), but in `data/originals/`, a
directory that no public route reads: only `GET /photos/{id}/original` (control, with a reason) and the evidence
bundle open these files. The photo id is the SHA-256 of these very bytes, so the file name is its own check.
"""

from __future__ import annotations

import hashlib
import pathlib

from ..errors import StorageError
from ..media import fsync_dir, is_photo_id, sniff, write_atomic

CONTENT_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "HEIF": "image/heic"}
EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp", "image/heic": "heic"}


def original_info(data: bytes) -> dict[str, object]:
    """`{"sha256", "bytes", "content_type"}` of uploaded bytes, as the photo's JSON carries it for control."""
    fmt = sniff(data)
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
            "content_type": CONTENT_TYPES.get(fmt or "", "application/octet-stream")}


def extension(content_type: str) -> str:
    return EXTENSIONS.get(content_type, "bin")


class Originals:
    """`root/ab/abcd...`: one file per original, named by its SHA-256."""

    def __init__(self, root: pathlib.Path) -> None:
        self.root = pathlib.Path(root)

    def path(self, photo_id: str) -> pathlib.Path | None:
        # Only a validated id ever becomes part of a path.
        if not is_photo_id(photo_id):
            return None
        return self.root / photo_id[:2] / photo_id

    def open_path(self, photo_id: str) -> pathlib.Path | None:
        found = self.path(photo_id)
        return found if found is not None and found.is_file() else None

    def save(self, data: bytes) -> str:
        """Store the bytes (once: the same bytes again change nothing); returns their SHA-256."""
        digest = hashlib.sha256(data).hexdigest()
        target = self.path(digest)
        assert target is not None
        if target.is_file():
            return digest
        try:
            if not target.parent.is_dir():
                self.root.mkdir(parents=True, exist_ok=True)
                target.parent.mkdir(exist_ok=True)
                fsync_dir(self.root)
            write_atomic(target, data)
            fsync_dir(target.parent)
        except OSError as exc:
            raise StorageError(f"could not store the original of photo {digest}: {exc}") from exc
        return digest

    def delete(self, photo_id: str) -> bool:
        """Erase an original (retention); True if there was one. The directory is fsynced, so it stays gone."""
        found = self.open_path(photo_id)
        if found is None:
            return False
        found.unlink()
        fsync_dir(found.parent)
        return True
