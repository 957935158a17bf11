"""Photo intake: check, decode, orient, convert to sRGB, strip every metadata block, thumbnail, store.

Synchronous and CPU-bound on purpose: the API layer runs `process_photo` and `MediaStore` calls through
`asyncio.to_thread`. Nothing here trusts a filename or a client-declared content type.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import pathlib
import re
import tempfile
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from PIL import Image, ImageCms

from fieldcomms import fingerprints
from fieldcomms.errors import PayloadTooLarge, StorageError, UnsupportedMediaType, ValidationFailed

FIELD = "file"
THUMB_SIZE = 320
JPEG_QUALITY = 85

_PHOTO_ID = re.compile(r"[0-9a-f]{64}")
_HEVC_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx"}
_AVIF_BRANDS = {b"avif", b"avis"}
_EXIF_IFD, _GPS_IFD = 0x8769, 0x8825
_ORIENTATION = 0x0112
_DATETIME_ORIGINAL, _OFFSET_TIME_ORIGINAL = 0x9003, 0x9011
_GPS_LAT_REF, _GPS_LAT, _GPS_LON_REF, _GPS_LON, _GPS_STATUS = 1, 2, 3, 4, 9
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


@dataclass(frozen=True)
class ProcessedPhoto:
    id: str
    content_type: str
    image: bytes
    thumb: bytes
    width: int
    height: int
    taken_at: str | None
    location: dict[str, float] | None
    fingerprint: dict[str, Any] | None = None  # fingerprints.Fingerprint.to_doc(); None without pdqhash


def is_photo_id(s: object) -> bool:
    return isinstance(s, str) and _PHOTO_ID.fullmatch(s) is not None


# --- type detection ---------------------------------------------------------------------------------------

_heif_lock = threading.Lock()
_heif_state: bool | None = None


def heif_available() -> bool:
    """Register pillow-heif's opener on first need; it is optional, so its absence means HEIC is a 415."""
    global _heif_state
    with _heif_lock:
        if _heif_state is None:
            try:
                from pillow_heif import register_heif_opener

                register_heif_opener()
                _heif_state = True
            except (ImportError, OSError):
                _heif_state = False
        return _heif_state


def sniff(data: bytes) -> str | None:
    """The Pillow format name the magic bytes promise, or None when it is not a type we take."""
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[4:8] == b"ftyp" and _is_heic(data):
        return "HEIF"
    return None


def _is_heic(data: bytes) -> bool:
    # mif1/msf1 only say "some HEIF container": AVIF uses them too, and AVIF is not a type we take.
    size = int.from_bytes(data[:4], "big")
    box = data[8 : min(max(size, 16), 4096)]  # major brand, minor version, compatible brands
    brands = {box[:4]} | {box[i : i + 4] for i in range(8, len(box) - 3, 4)}
    if brands & _HEVC_BRANDS:
        return True
    return bool(brands & {b"mif1", b"msf1"}) and not brands & _AVIF_BRANDS


# --- metadata (read only; any problem gives None, never an error) -----------------------------------------


def _exif(im: Image.Image) -> tuple[Image.Exif | None, dict[int, Any], dict[int, Any]]:
    try:
        exif = im.getexif()
    except Exception:
        return None, {}, {}
    ifds: list[dict[int, Any]] = []
    for tag in (_EXIF_IFD, _GPS_IFD):
        try:
            ifds.append(dict(exif.get_ifd(tag)))
        except Exception:
            ifds.append({})
    return exif, ifds[0], ifds[1]


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if not isinstance(value, str):
        return None
    return value.strip("\x00 \t\r\n")


def _orientation(exif: Image.Exif | None) -> int:
    try:
        value = exif.get(_ORIENTATION, 1) if exif is not None else 1
        return value if isinstance(value, int) else 1
    except Exception:
        return 1


def _degrees(value: Any) -> float | None:
    """EXIF GPS degrees/minutes/seconds (three rationals; some writers give fewer) to decimal degrees."""
    parts = value if isinstance(value, tuple | list) else (value,)
    if not 1 <= len(parts) <= 3:
        return None
    total = 0.0
    for part, scale in zip(parts, (1.0, 60.0, 3600.0), strict=False):
        try:
            number = float(part)
        except (TypeError, ValueError, ZeroDivisionError):
            return None
        if not math.isfinite(number) or number < 0:
            return None
        total += number / scale
    return total


def gps_location(gps: dict[int, Any]) -> dict[str, float] | None:
    try:
        # 'V' means the receiver had no fix; the coordinates beside it are stale or zero.
        if _text(gps.get(_GPS_STATUS)) == "V":
            return None
        lat_ref = (_text(gps.get(_GPS_LAT_REF)) or "").upper()
        lon_ref = (_text(gps.get(_GPS_LON_REF)) or "").upper()
        lat, lon = _degrees(gps.get(_GPS_LAT)), _degrees(gps.get(_GPS_LON))
    except Exception:
        return None
    # Without a ref the hemisphere is a guess, and a wrong hemisphere is worse than no location.
    if lat is None or lon is None or lat_ref not in ("N", "S") or lon_ref not in ("E", "W"):
        return None
    lat, lon = (-lat if lat_ref == "S" else lat), (-lon if lon_ref == "W" else lon)
    if lat > 90 or lon > 180 or lat < -90 or lon < -180 or (lat == 0 and lon == 0):
        return None
    return {"lat": round(lat, 7), "lon": round(lon, 7)}


def taken_at(exif_ifd: dict[int, Any]) -> str | None:
    try:
        raw = _text(exif_ifd.get(_DATETIME_ORIGINAL))
        if not raw:
            return None
        when = datetime.strptime(raw[:19], "%Y:%m:%d %H:%M:%S")
        offset = _text(exif_ifd.get(_OFFSET_TIME_ORIGINAL))
        tz = UTC
        if offset and (m := re.fullmatch(r"([+-])(\d\d):(\d\d)", offset)):
            delta = timedelta(hours=int(m[2]), minutes=int(m[3]))
            tz = timezone(-delta if m[1] == "-" else delta)
        return when.replace(tzinfo=tz).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except Exception:
        return None


# --- pixels -----------------------------------------------------------------------------------------------


def _has_alpha(im: Image.Image) -> bool:
    return im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info


def _normalise_mode(im: Image.Image) -> Image.Image:
    """To L, LA, RGB, RGBA or CMYK: the modes ImageCms and both encoders agree on."""
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # A plain convert("L") clips 16-bit samples at 255, turning a 16-bit photo white.
        return im.convert("I").point(lambda v: v * (1 / 257)).convert("L")
    if im.mode == "1":
        return im.convert("L")
    if im.mode in ("L", "LA", "RGB", "RGBA", "CMYK") and "transparency" not in im.info:
        return im
    if im.mode == "La":
        return im.convert("LA")
    return im.convert("RGBA" if _has_alpha(im) else "RGB")


def _to_srgb(im: Image.Image, icc: Any) -> Image.Image:
    """Colour-convert by the embedded profile, so the pixels survive the profile's removal."""
    alpha = im.getchannel("A") if im.mode in ("RGBA", "LA") else None
    colour = im.convert(im.mode[:-1]) if alpha is not None else im
    if isinstance(icc, bytes) and icc:
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            colour = ImageCms.profileToProfile(colour, source, _SRGB, outputMode="RGB") or colour
        except Exception:
            pass  # an unusable or mismatched profile: keep the pixels as they are and drop it
    if colour.mode not in ("L", "RGB"):
        colour = colour.convert("RGB")
    if alpha is None:
        return colour
    return Image.merge("LA" if colour.mode == "L" else "RGBA", (*colour.split(), alpha))


def _fresh(im: Image.Image) -> Image.Image:
    """A new image holding the pixels only: no `info`, so no encoder can find metadata to carry over."""
    out = Image.new(im.mode, im.size, None)  # None: skip the fill, paste covers every pixel
    out.paste(im)
    return out


def _encode(im: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    if fmt == "PNG":
        im.save(buf, "PNG")
    else:
        im.save(buf, "JPEG", quality=JPEG_QUALITY, optimize=True)
    return buf.getvalue()


def _refuse(message: str) -> ValidationFailed:
    return ValidationFailed.one(FIELD, message)


def _open(data: bytes, fmt: str, max_pixels: int) -> Image.Image:
    # Pillow's own bomb check fires inside open() with its global limit; ours, in max_pixels, is applied
    # to the declared size right after, before any pixel is decoded.
    im = Image.open(io.BytesIO(data), formats=[fmt])
    width, height = im.size
    if width < 1 or height < 1:
        raise _refuse("The image has no pixels.")
    if width * height > max_pixels:
        raise _refuse(f"The image is {width} x {height} pixels; the limit is {max_pixels} pixels.")
    return im


def decode(data: bytes, *, max_pixels: int) -> tuple[Image.Image, str]:
    """Open, verify, reopen and load the first frame; returns the loaded image and Pillow's format name."""
    fmt = sniff(data)
    if fmt is None or (fmt == "HEIF" and not heif_available()):
        raise UnsupportedMediaType("Photos must be JPEG, PNG or WebP (or HEIC where the server supports it).")
    try:
        _open(data, fmt, max_pixels).verify()
        im = _open(data, fmt, max_pixels)
        im.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise _refuse("The image has too many pixels.") from e
    except ValidationFailed:
        raise
    except Exception as e:
        # Pillow signals damaged input with a zoo of types (OSError, SyntaxError, struct.error, ...).
        raise _refuse("The image is damaged or truncated and cannot be decoded.") from e
    return im, im.format or fmt


def process_photo(
    data: bytes, *, max_pixels: int = 40_000_000, max_bytes: int = 15 * 1024 * 1024
) -> ProcessedPhoto:
    """Raises PayloadTooLarge (413), UnsupportedMediaType (415) or ValidationFailed on field "file" (422)."""
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"Photos are limited to {max_bytes} bytes.")
    im, fmt = decode(data, max_pixels=max_pixels)
    exif, exif_ifd, gps = _exif(im)
    icc = im.info.get("icc_profile")
    out_format = "PNG" if fmt == "PNG" or _has_alpha(im) else "JPEG"

    pixels = _normalise_mode(im)
    if (method := _TRANSPOSE.get(_orientation(exif))) is not None:
        pixels = pixels.transpose(method)
    pixels = _fresh(_to_srgb(pixels, icc))
    thumb = pixels.copy()
    thumb.thumbnail((THUMB_SIZE, THUMB_SIZE), Image.Resampling.LANCZOS)
    # Here, in the worker process, from the pixels as they will be stored: photos seen before.
    fingerprint = fingerprints.compute(pixels)

    return ProcessedPhoto(
        id=hashlib.sha256(data).hexdigest(),
        content_type="image/png" if out_format == "PNG" else "image/jpeg",
        image=_encode(pixels, out_format),
        thumb=_encode(_fresh(thumb), out_format),
        width=pixels.width,
        height=pixels.height,
        taken_at=taken_at(exif_ifd),
        location=gps_location(gps),
        fingerprint=None if fingerprint is None else fingerprint.to_doc(),
    )


# --- storage ----------------------------------------------------------------------------------------------


class MediaStore:
    """Photos on disk by content hash: `root/ab/abcd...` and `root/ab/abcd....thumb`, written atomically."""

    def __init__(self, root: pathlib.Path) -> None:
        self.root = pathlib.Path(root)

    def _path(self, photo_id: str, thumb: bool) -> pathlib.Path:
        return self.root / photo_id[:2] / (photo_id + ".thumb" if thumb else photo_id)

    def open_path(self, photo_id: str, thumb: bool = False) -> pathlib.Path | None:
        # Only a validated id ever becomes part of a path: nothing else can name a file here.
        if not is_photo_id(photo_id):
            return None
        path = self._path(photo_id, thumb)
        return path if path.is_file() else None

    def has(self, photo_id: str) -> bool:
        return self.open_path(photo_id) is not None

    def verify(self, photo_id: str) -> bool:
        paths = [self.open_path(photo_id), self.open_path(photo_id, thumb=True)]
        return all(p is not None and p.stat().st_size > 0 for p in paths)

    def save(self, photo: ProcessedPhoto) -> None:
        if not is_photo_id(photo.id):
            raise ValueError(f"not a photo id: {photo.id!r}")
        directory = self.root / photo.id[:2]
        try:
            if not directory.is_dir():
                self.root.mkdir(parents=True, exist_ok=True)
                directory.mkdir(exist_ok=True)
                fsync_dir(self.root)
            # Thumb first: once the full image is visible, `has` is true and the thumb must already be there.
            for data, thumb in ((photo.thumb, True), (photo.image, False)):
                target = self._path(photo.id, thumb)
                if not target.exists():
                    write_atomic(target, data)
                    fsync_dir(directory)
        except OSError as e:
            raise StorageError(f"could not store photo {photo.id}: {e}") from e


def write_atomic(target: pathlib.Path, data: bytes) -> None:
    """Write `data` to `target` whole or not at all: a temporary file beside it, fsynced, then renamed."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def fsync_dir(path: pathlib.Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
