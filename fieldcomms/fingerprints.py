"""Photos seen before: a perceptual fingerprint per photo, and a search by Hamming distance.

The fingerprint is PDQ (Facebook's 256-bit perceptual hash, through `pdqhash`), computed in the photo worker
pool from the pixels as stored (orientation applied, sRGB). PDQ shrugs off resizing, re-compression, small
crops and brightness changes, but hashes the whole frame, so a photo shown inside a phone screenshot (bars,
a status bar) hashes differently. So each photo gets two hashes: the whole frame, and the frame with its
near-uniform margins trimmed (`content_box`) when trimming removes anything; two photos are as close as
their closest pair of hashes. Measured (bench/bench_fingerprints.py), this lifts the recall of screenshot
copies without adding false matches, since a plain photo's trimmed hash is its whole-frame hash.

PDQ's quality score (0-100) says how much structure the image has; a flat or nearly flat picture hashes to
noise-like bits that match other flat pictures. Fingerprints of quality below QUALITY_MIN are stored but never
reported as similar.

The index keeps every fingerprint as four uint64 words in a numpy array and answers a query with one
vectorised XOR and popcount over all of them (100,000 photos: about 0.4 M words, a few milliseconds).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

try:
    import pdqhash
except ImportError:  # pragma: no cover - pdqhash is a dependency; a broken build must not stop photo intake
    pdqhash = None

HASH_BITS = 256
# Hamming distance (of 256 bits) at or under which two photos are reported as similar. PDQ's authors suggest 31
# for near-duplicates; 40 was chosen on the labelled set in bench/bench_fingerprints.py (recall and false-match
# rate recorded in bench/results.json).
MATCH_DISTANCE = 40
QUALITY_MIN = 50
HASH_MAX_SIDE = 512  # PDQ downsamples to 64x64 anyway; a box-filtered shrink first costs less than its filter
TRIM_TOLERANCE = 24  # a margin pixel differs from the margin colour by at most this (0-255, per channel)
TRIM_FRACTION = 0.8  # a row or column is margin when this share of its pixels are margin-coloured
# Copies are often cropped a little. PDQ is not crop-proof (4% off each side moves ~80 of 256 bits), so each
# photo also gets the hashes of its frame cropped by these fractions on each side: any crop up to ~9% is
# within 1.25% of one of them (measured: 1% apart costs 10-30 bits).
CROP_LEVELS = (0.025, 0.05, 0.075)


@dataclass(frozen=True)
class Fingerprint:
    """`primary`: the whole frame, then the trimmed frame when trimming changed it; `crops`: the whole frame
    cropped by CROP_LEVELS on each side. Hex, 64 digits each."""

    primary: tuple[str, ...]
    crops: tuple[str, ...]
    quality: int

    def to_doc(self) -> dict[str, Any]:
        return {"primary": list(self.primary), "crops": list(self.crops), "quality": self.quality}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Fingerprint:
        return cls(tuple(doc.get("primary", ())), tuple(doc.get("crops", ())), int(doc.get("quality", 0)))


def _hash(rgb: np.ndarray) -> tuple[str, int]:
    bits, quality = pdqhash.compute(np.ascontiguousarray(rgb))
    packed = np.packbits(np.asarray(bits, dtype=np.uint8))
    return packed.tobytes().hex(), int(quality)


def content_box(gray: np.ndarray) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the picture inside near-uniform margins (bars, a status bar with a few
    small icons): rows and columns from each edge are dropped while nearly all their pixels are within
    TRIM_TOLERANCE of the colour of that edge's corner."""
    height, width = gray.shape
    top, bottom, left, right = 0, height, 0, width

    def margin(line: np.ndarray, colour: float) -> bool:
        return bool(np.mean(np.abs(line.astype(np.int16) - colour) <= TRIM_TOLERANCE) >= TRIM_FRACTION)

    colour = float(gray[0, 0])
    while top < bottom - 1 and margin(gray[top, :], colour):
        top += 1
    colour = float(gray[-1, -1])
    while bottom > top + 1 and margin(gray[bottom - 1, :], colour):
        bottom -= 1
    colour = float(gray[top, 0])
    while left < right - 1 and margin(gray[top:bottom, left], colour):
        left += 1
    colour = float(gray[bottom - 1, -1])
    while right > left + 1 and margin(gray[top:bottom, right - 1], colour):
        right -= 1
    return top, bottom, left, right


def compute(image: Image.Image) -> Fingerprint | None:
    """The fingerprint of a decoded image (any mode), or None where pdqhash is unavailable."""
    if pdqhash is None:
        return None
    im = image.convert("RGB")
    if max(im.size) > HASH_MAX_SIDE:
        im = im.copy()
        im.thumbnail((HASH_MAX_SIDE, HASH_MAX_SIDE), Image.Resampling.BOX)
    rgb = np.asarray(im)
    height, width = rgb.shape[:2]
    whole, quality = _hash(rgb)
    primary = [whole]
    top, bottom, left, right = content_box(np.asarray(im.convert("L")))
    if (bottom - top) * (right - left) < 0.97 * height * width and bottom - top >= 32 and right - left >= 32:
        trimmed, _ = _hash(rgb[top:bottom, left:right])
        if trimmed != whole:
            primary.append(trimmed)
    crops = []
    for level in CROP_LEVELS:
        dy, dx = round(height * level), round(width * level)
        if height - 2 * dy >= 32 and width - 2 * dx >= 32:
            crops.append(_hash(rgb[dy:height - dy, dx:width - dx])[0])
    return Fingerprint(tuple(primary), tuple(crops), quality)


def _words(hex_hash: str) -> np.ndarray:
    return np.frombuffer(bytes.fromhex(hex_hash), dtype=">u8").astype(np.uint64)


class _Rows:
    """Hashes as four columns of uint64 words (each contiguous, so that a pass over one is a straight read),
    each row owned by a photo (its number in the index). New rows wait in a list and join the columns in one
    conversion at the next search: loading 100,000 photos costs one numpy call, not 1.6 million scalar writes.

    A search writes into scratch arrays kept from one search to the next (a pass over 500,000 rows would
    otherwise allocate about 6 MB, four times, per query hash). So a _Rows is searched from one thread at a
    time: the event loop's."""

    def __init__(self) -> None:
        self.cols = [np.zeros(0, dtype=np.uint64) for _ in range(4)]
        self.owner = np.zeros(0, dtype=np.int32)
        self._pending: list[bytes] = []
        self._pending_owner: list[int] = []
        self._word = np.zeros(0, dtype=np.uint64)
        self._head = np.zeros(0, dtype=np.uint8)
        self._second = np.zeros(0, dtype=np.uint8)
        self._hit = np.zeros(0, dtype=np.bool_)

    def __len__(self) -> int:
        return len(self.owner) + len(self._pending_owner)

    def add(self, hex_hash: str, owner: int) -> None:
        self._pending.append(bytes.fromhex(hex_hash))
        self._pending_owner.append(owner)

    def _flush(self) -> None:
        if not self._pending:
            return
        words = np.frombuffer(b"".join(self._pending), dtype=">u8").astype(np.uint64).reshape(-1, 4)
        self.cols = [np.concatenate([col, words[:, i]]) for i, col in enumerate(self.cols)]
        self.owner = np.concatenate([self.owner, np.asarray(self._pending_owner, dtype=np.int32)])
        self._pending, self._pending_owner = [], []
        if len(self._word) < len(self.owner):  # room for what arrives next without growing at every upload
            size = len(self.owner) + len(self.owner) // 8 + 1024
            self._word = np.empty(size, dtype=np.uint64)
            self._head = np.empty(size, dtype=np.uint8)
            self._second = np.empty(size, dtype=np.uint8)
            self._hit = np.empty(size, dtype=np.bool_)

    def near(self, hex_hashes: Iterable[str], max_distance: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """For each query hash, (owners, distances) of the rows within `max_distance` of it.

        Per query, the first two words of every row are compared in one vectorised pass (XOR, popcount, add,
        compare: no Python loop over rows); only rows already within `max_distance` on those 128 bits (for
        unrelated photos about 64 of them differ, so about one row in 100,000 passes) get the other two
        compared: half the work of comparing all four."""
        self._flush()
        n = len(self.owner)
        word, head, second, hit = self._word[:n], self._head[:n], self._second[:n], self._hit[:n]
        c0, c1, c2, c3 = self.cols
        found = []
        for hex_hash in hex_hashes:
            q0, q1, q2, q3 = (np.uint64(w) for w in _words(hex_hash))
            np.bitwise_xor(c0, q0, out=word)
            np.bitwise_count(word, out=head)  # uint8: at most 64 + 64
            np.bitwise_xor(c1, q1, out=word)
            np.bitwise_count(word, out=second)
            np.add(head, second, out=head)
            np.less_equal(head, max_distance, out=hit)
            rows = np.flatnonzero(hit)
            distance = head[rows].astype(np.int32)
            distance += np.bitwise_count(c2[rows] ^ q2)
            distance += np.bitwise_count(c3[rows] ^ q3)
            keep = distance <= max_distance
            found.append((self.owner[rows[keep]], distance[keep]))
        return found


class FingerprintIndex:
    """Every stored photo's fingerprint, searchable by Hamming distance. Fed by the store's apply hook on
    "photos" (records carry `_fingerprint`, see Fingerprint.to_doc; the underscore keeps it out of every view),
    so it is complete once the store has loaded.

    Two photos are as close as their closest pair of hashes, compared both ways: the query's primary hashes
    against every stored hash (the query is a cropped or screenshotted copy of a stored photo), and the
    query's crop hashes against stored primary hashes (the stored photo is a cropped copy of the query)."""

    def __init__(self) -> None:
        self._primary = _Rows()
        self._all = _Rows()
        self._ids: list[str] = []
        self._number: dict[str, int] = {}
        self._quality: list[int] = []
        self._fingerprints: dict[str, Fingerprint] = {}

    def __len__(self) -> int:
        return len(self._ids)

    def on_apply(self, coll: str, old: dict[str, Any] | None, new: dict[str, Any]) -> None:
        doc = new.get("_fingerprint")
        if doc and new["id"] not in self._number:
            self.add(new["id"], Fingerprint.from_doc(doc))

    def add(self, photo_id: str, fingerprint: Fingerprint) -> None:
        if photo_id in self._number:
            return
        number = len(self._ids)
        self._ids.append(photo_id)
        self._number[photo_id] = number
        self._quality.append(fingerprint.quality)
        self._fingerprints[photo_id] = fingerprint
        for hex_hash in fingerprint.primary:
            self._primary.add(hex_hash, number)
            self._all.add(hex_hash, number)
        for hex_hash in fingerprint.crops:
            self._all.add(hex_hash, number)

    def get(self, photo_id: str) -> Fingerprint | None:
        return self._fingerprints.get(photo_id)

    def warm(self) -> None:
        """Turn what the store loaded into columns now (about a second per million hashes) rather than
        in the first search."""
        self._primary._flush()
        self._all._flush()

    def search(self, photo_id: str, max_distance: int = MATCH_DISTANCE,
               limit: int = 50) -> list[tuple[str, int]]:
        """Other photos within `max_distance` of `photo_id`, closest first: [(photo id, distance)]. A photo
        of too little structure (PDQ quality under QUALITY_MIN) matches nothing and is matched by nothing."""
        fingerprint = self._fingerprints.get(photo_id)
        if fingerprint is None or fingerprint.quality < QUALITY_MIN:
            return []
        me = self._number[photo_id]
        best: dict[int, int] = {}
        found = self._all.near(fingerprint.primary, max_distance)
        found += self._primary.near(fingerprint.crops, max_distance)
        for owners, distances in found:
            for owner, distance in zip(owners.tolist(), distances.tolist(), strict=True):
                if owner != me and self._quality[owner] >= QUALITY_MIN and distance < best.get(owner, 10**6):
                    best[owner] = distance
        ranked = sorted(best.items(), key=lambda item: (item[1], item[0]))[:limit]
        return [(self._ids[owner], distance) for owner, distance in ranked]
