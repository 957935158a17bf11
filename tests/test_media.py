"""Photo intake: what is accepted, what is refused, and that no metadata survives into the served bytes."""

from __future__ import annotations

import hashlib
import io
import pathlib
import random
import struct
import time
import zlib

import pytest
from PIL import Image, ImageCms, TiffImagePlugin
from PIL.PngImagePlugin import PngInfo

from fieldcomms import media
from fieldcomms.errors import PayloadTooLarge, UnsupportedMediaType, ValidationFailed
from fieldcomms.media import MediaStore, ProcessedPhoto, is_photo_id, process_photo
from tests.imagebytes import jpeg_segments, png_chunks

SAMPLES = pathlib.Path(__file__).resolve().parents[2] / "shared" / "samples" / "photos"
XMP = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF>officer 4711 was here</rdf:RDF></x:xmpmeta>'
R = TiffImagePlugin.IFDRational


# --- helpers: build inputs, and read the served bytes by hand ----------------------------------------------


def encode(im: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **params)
    return buf.getvalue()


def make_exif(
    *,
    lat: tuple[str, tuple[R, ...]] | None = None,
    lon: tuple[str, tuple[R, ...]] | None = None,
    taken: str | None = None,
    offset: str | None = None,
    orientation: int | None = None,
) -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = "FieldCam"  # Make
    exif[0x0110] = "Handset 9000"  # Model
    if orientation is not None:
        exif[0x0112] = orientation
    if lat or lon:
        gps = exif.get_ifd(0x8825)
        if lat:
            gps[1], gps[2] = lat
        if lon:
            gps[3], gps[4] = lon
    if taken:
        sub = exif.get_ifd(0x8769)
        sub[0x9003] = taken
        if offset:
            sub[0x9011] = offset
    return exif


def dms(d: int, m: int, s_hundredths: int) -> tuple[R, R, R]:
    return (R(d, 1), R(m, 1), R(s_hundredths, 100))




def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR claims width x height RGB pixels, with one scanline's worth of data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def assert_metadata_free(blob: bytes, content_type: str) -> None:
    if content_type == "image/jpeg":
        for marker, payload in jpeg_segments(blob):
            assert marker != 0xFE, "COM segment survived"
            assert not (marker == 0xE1 and payload.startswith(b"Exif\x00\x00")), "EXIF survived"
            assert not (marker == 0xE1 and payload.startswith(b"http://ns.adobe.com/xap/1.0/")), "XMP survived"
            assert not (marker == 0xE2 and payload.startswith(b"ICC_PROFILE")), "ICC survived"
            # Stronger than the list above: the only application segment left is the JFIF header.
            if 0xE0 <= marker <= 0xEF:
                assert marker == 0xE0 and payload.startswith(b"JFIF\x00"), f"APP{marker - 0xE0} survived"
    else:
        assert content_type == "image/png"
        chunks = png_chunks(blob)
        for kind in (b"tEXt", b"iTXt", b"zTXt", b"eXIf", b"iCCP", b"tIME"):
            assert kind not in chunks
        assert set(chunks) <= {b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"IEND"}
    im = Image.open(io.BytesIO(blob))
    im.load()
    assert len(im.getexif()) == 0
    for key in ("exif", "icc_profile", "xmp", "comment", "XML:com.adobe.xmp", "Raw profile type exif"):
        assert key not in im.info
    assert b"officer 4711" not in blob and b"FieldCam" not in blob


def assert_clean(photo: ProcessedPhoto) -> None:
    assert_metadata_free(photo.image, photo.content_type)
    assert_metadata_free(photo.thumb, photo.content_type)


def served(photo: ProcessedPhoto, thumb: bool = False) -> Image.Image:
    im = Image.open(io.BytesIO(photo.thumb if thumb else photo.image))
    im.load()
    return im


def rgb(im: Image.Image, xy: tuple[int, int]) -> tuple[int, ...]:
    value = im.getpixel(xy)
    assert isinstance(value, tuple), value
    return value


def close(a: tuple[int, ...], b: tuple[int, ...], tol: int = 12) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


def swapped_primaries_profile() -> bytes:
    """sRGB with its red and green colorants exchanged: pure red in this space is sRGB's pure green."""
    icc = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    (count,) = struct.unpack(">I", icc[128:132])
    entries = {bytes(icc[132 + 12 * i : 136 + 12 * i]): 132 + 12 * i for i in range(count)}
    r, g = entries[b"rXYZ"], entries[b"gXYZ"]
    icc[r + 4 : r + 12], icc[g + 4 : g + 12] = icc[g + 4 : g + 12], icc[r + 4 : r + 12]
    return bytes(icc)


# --- metadata is read, then removed ------------------------------------------------------------------------


def test_jpeg_north_east_gps_date_xmp_comment_read_then_stripped() -> None:
    exif = make_exif(lat=("N", dms(53, 22, 4404)), lon=("E", dms(1, 28, 4044)), taken="2011:03:12 10:02:00")
    src = encode(Image.new("RGB", (400, 300), (30, 120, 200)), "JPEG", exif=exif, xmp=XMP, comment=b"secret")
    kinds = {(m, p[:6]) for m, p in jpeg_segments(src)}
    assert (0xE1, b"Exif\x00\x00") in kinds and (0xFE, b"secret") in kinds  # the input really carries it all
    assert any(m == 0xE1 and p.startswith(b"http://ns.adobe.com/xap/1.0/") for m, p in jpeg_segments(src))

    photo = process_photo(src)

    assert photo.location is not None
    assert photo.location["lat"] == pytest.approx(53 + 22 / 60 + 44.04 / 3600, abs=1e-6)
    assert photo.location["lon"] == pytest.approx(1 + 28 / 60 + 40.44 / 3600, abs=1e-6)
    assert photo.taken_at == "2011-03-12T10:02:00Z"
    assert (photo.content_type, photo.width, photo.height) == ("image/jpeg", 400, 300)
    assert_clean(photo)
    assert close(rgb(served(photo), (200, 150)), (30, 120, 200))


def test_jpeg_south_west_gps_is_negative_and_offset_normalised_to_utc() -> None:
    exif = make_exif(
        lat=("S", dms(33, 52, 1234)), lon=("W", dms(151, 12, 0)), taken="2024:01:01 01:30:00", offset="+02:00"
    )
    photo = process_photo(encode(Image.new("RGB", (64, 48), "white"), "JPEG", exif=exif))
    assert photo.location == {
        "lat": pytest.approx(-(33 + 52 / 60 + 12.34 / 3600), abs=1e-6),
        "lon": pytest.approx(-(151 + 12 / 60), abs=1e-6),
    }
    assert photo.taken_at == "2023-12-31T23:30:00Z"
    assert_clean(photo)


@pytest.mark.parametrize(
    "gps",
    [
        {},
        {2: dms(53, 0, 0), 4: dms(1, 0, 0)},  # no hemisphere refs
        {1: "N", 2: dms(95, 0, 0), 3: "E", 4: dms(1, 0, 0)},  # latitude out of range
        {1: "N", 2: dms(53, 0, 0), 3: "E", 4: dms(181, 0, 0)},  # longitude out of range
        {1: "N", 2: (R(53, 0), R(0, 1), R(0, 1)), 3: "E", 4: dms(1, 0, 0)},  # zero denominator
        {1: "Q", 2: dms(53, 0, 0), 3: "E", 4: dms(1, 0, 0)},  # nonsense ref
        {1: "N", 2: "fifty-three", 3: "E", 4: dms(1, 0, 0)},  # wrong type
        {1: "N", 2: dms(0, 0, 0), 3: "E", 4: dms(0, 0, 0)},  # 0,0: a receiver without a fix
        {1: "N", 2: dms(53, 0, 0), 3: "E", 4: dms(1, 0, 0), 9: "V"},  # GPSStatus: void
    ],
)
def test_bad_or_absent_gps_gives_no_location(gps: dict[int, object]) -> None:
    assert media.gps_location(gps) is None


def test_gps_refs_as_bytes_with_padding_are_understood() -> None:
    assert media.gps_location({1: b"S\x00", 2: dms(10, 30, 0), 3: b"E ", 4: dms(20, 0, 0)}) == {
        "lat": -10.5,
        "lon": 20.0,
    }


@pytest.mark.parametrize(
    ("exif_ifd", "expected"),
    [
        ({0x9003: "2011:03:12 10:02:00"}, "2011-03-12T10:02:00Z"),
        ({0x9003: "2011:03:12 10:02:00\x00"}, "2011-03-12T10:02:00Z"),
        ({0x9003: b"2011:03:12 10:02:00"}, "2011-03-12T10:02:00Z"),
        ({0x9003: "2011:03:12 10:02:00", 0x9011: "+05:30"}, "2011-03-12T04:32:00Z"),
        ({0x9003: "2011:03:12 22:00:00", 0x9011: "-03:00"}, "2011-03-13T01:00:00Z"),
        ({0x9003: "2011:03:12 10:02:00", 0x9011: "garbage"}, "2011-03-12T10:02:00Z"),
        ({0x9003: "    :  :     :  :  "}, None),
        ({0x9003: "0000:00:00 00:00:00"}, None),
        ({0x9003: "2011:13:45 99:00:00"}, None),
        ({0x9003: 12345}, None),
        ({}, None),
    ],
)
def test_taken_at(exif_ifd: dict[int, object], expected: str | None) -> None:
    assert media.taken_at(exif_ifd) == expected


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")
def test_damaged_exif_block_is_ignored_not_fatal() -> None:
    src = encode(Image.new("RGB", (32, 32), "red"), "JPEG")
    garbage = b"Exif\x00\x00MM\x00\x2a\x00\x00\xff\xf0" + bytes(range(256)) * 4
    src = src[:2] + b"\xff\xe1" + struct.pack(">H", len(garbage) + 2) + garbage + src[2:]
    photo = process_photo(src)
    assert (photo.location, photo.taken_at, photo.width) == (None, None, 32)
    assert_clean(photo)


def test_png_text_exif_xmp_chunks_are_stripped_and_pixels_kept() -> None:
    info = PngInfo()
    info.add_text("Author", "officer 4711")
    info.add_text("Comment", "officer 4711 again", zip=True)
    info.add_itxt("XML:com.adobe.xmp", XMP.decode())
    src_im = Image.new("RGB", (50, 40), (10, 200, 90))
    src_im.putpixel((3, 4), (250, 5, 5))
    src = encode(src_im, "PNG", pnginfo=info, exif=make_exif(lat=("N", dms(53, 0, 0)), lon=("W", dms(1, 0, 0))))
    assert {b"tEXt", b"zTXt", b"iTXt", b"eXIf"} <= set(png_chunks(src))

    photo = process_photo(src)

    assert photo.content_type == "image/png"
    assert photo.location == {"lat": 53.0, "lon": -1.0}
    assert_clean(photo)
    out = served(photo)
    assert out.getpixel((3, 4)) == (250, 5, 5) and out.getpixel((0, 0)) == (10, 200, 90)  # lossless


def test_alpha_survives_as_png() -> None:
    im = Image.new("RGBA", (20, 20), (255, 0, 0, 0))
    im.putpixel((1, 1), (0, 0, 255, 128))
    photo = process_photo(encode(im, "WEBP", lossless=True, exif=make_exif(), xmp=XMP))
    assert photo.content_type == "image/png"
    assert_clean(photo)
    out = served(photo)
    assert out.mode == "RGBA" and out.getpixel((1, 1)) == (0, 0, 255, 128) and rgb(out, (5, 5))[3] == 0


def test_palette_png_with_transparency_becomes_rgba() -> None:
    im = Image.new("P", (10, 10), 1)
    im.putpalette([0, 0, 0, 255, 255, 0])
    photo = process_photo(encode(im, "PNG", transparency=0))
    assert photo.content_type == "image/png" and served(photo).mode == "RGBA"
    assert served(photo).getpixel((0, 0)) == (255, 255, 0, 255)


def test_webp_with_exif_and_xmp_is_served_as_clean_jpeg() -> None:
    exif = make_exif(lat=("N", dms(51, 30, 0)), lon=("W", dms(0, 7, 0)), taken="2020:05:05 05:05:05")
    photo = process_photo(encode(Image.new("RGB", (120, 90), (200, 200, 20)), "WEBP", exif=exif, xmp=XMP))
    assert photo.content_type == "image/jpeg" and (photo.width, photo.height) == (120, 90)
    assert photo.location == {"lat": 51.5, "lon": pytest.approx(-7 / 60)}
    assert photo.taken_at == "2020-05-05T05:05:05Z"
    assert_clean(photo)


def test_sixteen_bit_grey_png_keeps_its_brightness() -> None:
    im = Image.new("I;16", (8, 8), 32768)
    photo = process_photo(encode(im, "PNG"))
    value = served(photo).getpixel((0, 0))
    assert value in range(120, 136)  # about half, not clipped to white


def test_cmyk_jpeg_is_served_as_rgb() -> None:
    photo = process_photo(encode(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG"))
    out = served(photo)
    assert out.mode == "RGB" and close(rgb(out, (8, 8)), (255, 0, 0), tol=20)


# --- orientation -------------------------------------------------------------------------------------------

W, H = 64, 32  # whole 16 px JPEG blocks, so the marks do not bleed into each other
CORNERS = {"TL": (5, 5), "TR": (-6, 5), "BL": (5, -6), "BR": (-6, -6)}
# Where the stored top-left (red) and top-right (green) corners end up when displayed, from the EXIF spec.
ORIENTATIONS = {
    1: ("TL", "TR", False),
    2: ("TR", "TL", False),
    3: ("BR", "BL", False),
    4: ("BL", "BR", False),
    5: ("TL", "BL", True),
    6: ("TR", "BR", True),
    7: ("BR", "TR", True),
    8: ("BL", "TL", True),
}


def corner(im: Image.Image, name: str) -> tuple[int, ...]:
    x, y = CORNERS[name]
    return rgb(im, (x % im.width, y % im.height))


@pytest.mark.parametrize("orientation", sorted(ORIENTATIONS))
def test_exif_orientation_is_applied(orientation: int) -> None:
    im = Image.new("RGB", (W, H), "white")
    im.paste((255, 0, 0), (0, 0, 16, 16))
    im.paste((0, 255, 0), (W - 16, 0, W, 16))
    photo = process_photo(encode(im, "JPEG", quality=95, exif=make_exif(orientation=orientation)))
    red_at, green_at, swapped = ORIENTATIONS[orientation]
    assert (photo.width, photo.height) == ((H, W) if swapped else (W, H))
    out = served(photo)
    assert out.size == (photo.width, photo.height)
    assert close(corner(out, red_at), (255, 0, 0)) and close(corner(out, green_at), (0, 255, 0))
    assert_clean(photo)  # no orientation tag left for a viewer to apply a second time
    assert served(photo, thumb=True).size == out.size  # small image: thumb is not enlarged


# --- colour profiles ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_icc_profile_is_applied_then_removed(fmt: str) -> None:
    src = encode(Image.new("RGB", (32, 32), (255, 0, 0)), fmt, icc_profile=swapped_primaries_profile())
    assert Image.open(io.BytesIO(src)).info.get("icc_profile")
    photo = process_photo(src)
    assert_clean(photo)
    # Red in the embedded (swapped) space is green in sRGB: the pixels were converted, not just untagged.
    assert close(rgb(served(photo), (16, 16)), (0, 255, 0), tol=4)


@pytest.mark.parametrize(
    "icc",
    [
        ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes(),  # colour space does not match RGB
        b"not an icc profile at all" * 10,
    ],
)
def test_unusable_icc_profile_is_dropped(icc: bytes) -> None:
    photo = process_photo(encode(Image.new("RGB", (32, 32), (40, 80, 160)), "PNG", icc_profile=icc))
    assert_clean(photo)
    assert served(photo).getpixel((5, 5)) == (40, 80, 160)


# --- refusals ----------------------------------------------------------------------------------------------

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def test_pdf_named_jpg_is_415(tmp_path: pathlib.Path) -> None:
    named = tmp_path / "photo.jpg"
    named.write_bytes(PDF)
    with pytest.raises(UnsupportedMediaType):
        process_photo(named.read_bytes())


@pytest.mark.parametrize(
    "data",
    [
        random.Random(4711).randbytes(4096),
        b"hello, this is plain text\n" * 20,
        encode(Image.new("RGB", (8, 8)), "GIF"),
        encode(Image.new("RGB", (8, 8)), "BMP"),
        encode(Image.new("RGB", (8, 8)), "TIFF"),
        b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf" + b"\x00" * 64,
        b"\x00\x00\x00\x1cftypmif1\x00\x00\x00\x00mif1avifmiaf" + b"\x00" * 64,
        b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00qt  " + b"\x00" * 64,
        b"",
    ],
    ids=["random", "text", "gif", "bmp", "tiff", "avif", "avif-mif1", "quicktime", "empty"],
)
def test_other_content_is_415(data: bytes) -> None:
    with pytest.raises(UnsupportedMediaType) as caught:
        process_photo(data)
    assert caught.value.status == 415


def test_heic_without_pillow_heif_is_415(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(media, "_heif_state", False)
    with pytest.raises(UnsupportedMediaType):
        process_photo(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 100)


def test_truncated_jpeg_is_422() -> None:
    noise = Image.effect_noise((300, 300), 80).convert("RGB")
    src = encode(noise, "JPEG")
    with pytest.raises(ValidationFailed) as caught:
        process_photo(src[: len(src) // 2])
    assert caught.value.status == 422 and caught.value.errors[0]["field"] == "file"


@pytest.mark.parametrize(
    "data",
    [b"\xff\xd8\xff\xe0" + b"\x00" * 50, b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, b"RIFF\x00\x00\x00\x00WEBPVP8 "],
    ids=["jpeg", "png", "webp"],
)
def test_right_magic_but_garbage_is_422(data: bytes) -> None:
    with pytest.raises(ValidationFailed):
        process_photo(data)


def test_png_with_bad_crc_is_422() -> None:
    src = bytearray(encode(Image.new("RGB", (16, 16), "blue"), "PNG"))
    idat = src.index(b"IDAT")
    src[idat + 6] ^= 0xFF
    with pytest.raises(ValidationFailed):
        process_photo(bytes(src))


def test_decompression_bomb_png_is_refused_fast() -> None:
    bomb = png_declaring(30_000, 30_000)
    assert len(bomb) < 200
    limit_before = Image.MAX_IMAGE_PIXELS
    started = time.perf_counter()
    with pytest.raises(ValidationFailed) as caught:
        process_photo(bomb)
    assert time.perf_counter() - started < 0.5
    assert caught.value.status == 422
    assert Image.MAX_IMAGE_PIXELS == limit_before


def test_own_pixel_limit_applies_below_pillows() -> None:
    started = time.perf_counter()
    with pytest.raises(ValidationFailed, match="limit"):
        process_photo(png_declaring(7_000, 7_000))  # 49 MP: over our 40 MP, under Pillow's warning level
    assert time.perf_counter() - started < 0.5
    with pytest.raises(ValidationFailed, match="limit"):
        process_photo(encode(Image.new("RGB", (20, 20)), "JPEG"), max_pixels=399)
    assert process_photo(encode(Image.new("RGB", (20, 20)), "JPEG"), max_pixels=400).width == 20


@pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")
def test_pillow_bomb_warning_becomes_422_when_warnings_are_errors() -> None:
    with pytest.raises(ValidationFailed):
        process_photo(png_declaring(10_000, 10_000), max_pixels=10**10)


def test_over_max_bytes_is_413() -> None:
    src = encode(Image.new("RGB", (20, 20)), "JPEG")
    with pytest.raises(PayloadTooLarge) as caught:
        process_photo(src, max_bytes=len(src) - 1)
    assert caught.value.status == 413
    assert process_photo(src, max_bytes=len(src)).width == 20


# --- thumbnails and identity -------------------------------------------------------------------------------


@pytest.mark.parametrize(("size", "thumb_size"), [((1000, 400), (320, 128)), ((300, 900), (107, 320))])
def test_thumbnail_long_side_is_at_most_320(size: tuple[int, int], thumb_size: tuple[int, int]) -> None:
    photo = process_photo(encode(Image.new("RGB", size, "grey"), "JPEG", exif=make_exif()))
    assert (photo.width, photo.height) == size
    assert served(photo, thumb=True).size == thumb_size


def test_id_is_sha256_of_the_uploaded_bytes() -> None:
    src = encode(Image.new("RGB", (10, 10), "navy"), "PNG")
    first, again = process_photo(src), process_photo(bytes(bytearray(src)))
    assert first.id == again.id == hashlib.sha256(src).hexdigest() and is_photo_id(first.id)
    assert first.image == again.image  # deterministic, so a duplicate upload stores the same bytes
    assert process_photo(encode(Image.new("RGB", (10, 10), "teal"), "PNG")).id != first.id


# --- the real samples --------------------------------------------------------------------------------------

needs_samples = pytest.mark.skipif(not SAMPLES.is_dir(), reason=f"sample photos not found at {SAMPLES}")


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


@needs_samples
@pytest.mark.parametrize("name", ["DSCN0010.jpg", "DSCN0021.jpg"])
def test_sample_nikon_gps(name: str) -> None:
    photo = process_photo(sample(name))
    assert photo.location is not None
    assert photo.location["lat"] == pytest.approx(43.467, abs=0.001)
    assert photo.location["lon"] == pytest.approx(11.885, abs=0.001)
    assert photo.taken_at is not None and photo.taken_at.startswith("2008-10-22T16:")
    assert (photo.width, photo.height) == (640, 480)
    assert_clean(photo)


@needs_samples
def test_sample_landscape_6_is_rotated() -> None:
    photo = process_photo(sample("landscape_6.jpg"))
    assert (photo.width, photo.height) == (600, 450)
    assert served(photo).size == (600, 450)
    assert_clean(photo)  # its Generic RGB ICC profile included


@needs_samples
def test_sample_corrupted_exif_is_accepted() -> None:
    photo = process_photo(sample("corrupted.jpg"))
    assert (photo.width, photo.height) == (3648, 2736)
    assert photo.location is None or set(photo.location) == {"lat", "lon"}
    assert_clean(photo)


@needs_samples
@pytest.mark.parametrize(("name", "size"), [("image01137.jpg", (88, 64)), ("jolla.jpg", (3264, 2448))])
def test_sample_odd_exif_accepted(name: str, size: tuple[int, int]) -> None:
    photo = process_photo(sample(name))
    assert (photo.width, photo.height) == size and photo.location is None
    assert_clean(photo)


@needs_samples
def test_sample_iphone_heic() -> None:
    if not media.heif_available():
        pytest.skip("pillow_heif is not importable: HEIC is refused with 415 on this install")
    photo = process_photo(sample("iphone_13_pro_max.HEIC"))
    assert (photo.width, photo.height) == (3024, 4032)
    assert photo.content_type == "image/jpeg" and photo.location is None
    assert photo.taken_at == "2022-02-16T11:55:41Z"  # 12:55:41 at +01:00
    assert max(served(photo, thumb=True).size) == 320
    assert_clean(photo)  # its Display P3 profile was converted away


# --- storage -----------------------------------------------------------------------------------------------


def stored_photo() -> ProcessedPhoto:
    return process_photo(encode(Image.new("RGB", (400, 100), "olive"), "JPEG"))


def test_store_layout_and_lookups(tmp_path: pathlib.Path) -> None:
    store, photo = MediaStore(tmp_path / "media"), stored_photo()
    assert not store.has(photo.id) and store.open_path(photo.id) is None and not store.verify(photo.id)
    store.save(photo)
    folder = tmp_path / "media" / photo.id[:2]
    assert sorted(p.name for p in folder.iterdir()) == [photo.id, photo.id + ".thumb"]
    assert store.open_path(photo.id) == folder / photo.id
    assert store.open_path(photo.id, thumb=True) == folder / (photo.id + ".thumb")
    assert (folder / photo.id).read_bytes() == photo.image
    assert (folder / (photo.id + ".thumb")).read_bytes() == photo.thumb
    assert store.has(photo.id) and store.verify(photo.id)


def test_store_save_twice_writes_once(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store, photo = MediaStore(tmp_path), stored_photo()
    store.save(photo)
    inode = (tmp_path / photo.id[:2] / photo.id).stat().st_ino
    writes: list[pathlib.Path] = []
    monkeypatch.setattr(media, "write_atomic", lambda target, data: writes.append(target))
    store.save(photo)
    assert writes == []
    assert (tmp_path / photo.id[:2] / photo.id).stat().st_ino == inode
    assert len(list((tmp_path / photo.id[:2]).iterdir())) == 2  # no temp files left behind


def test_store_restores_a_missing_thumb(tmp_path: pathlib.Path) -> None:
    store, photo = MediaStore(tmp_path), stored_photo()
    store.save(photo)
    (tmp_path / photo.id[:2] / (photo.id + ".thumb")).unlink()
    assert store.has(photo.id) and not store.verify(photo.id)
    store.save(photo)
    assert store.verify(photo.id)


@pytest.mark.parametrize(
    "bad",
    [
        "../etc/passwd",
        "../../" + "a" * 58,
        "A" * 64,
        "ab" * 31,
        "a" * 65,
        "a" * 63 + "\n",
        "a" * 63 + "/",
        "g" * 64,
        "",
        None,
        42,
    ],
)
def test_open_path_refuses_anything_but_an_id(tmp_path: pathlib.Path, bad: object) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("root:x:0:0")
    store = MediaStore(tmp_path / "media")
    assert store.open_path(bad) is None  # type: ignore[arg-type]
    assert store.open_path(bad, thumb=True) is None  # type: ignore[arg-type]
    assert not store.has(bad) and not is_photo_id(bad)  # type: ignore[arg-type]
