"""Tests for cxr_pneumonia.imaging: a generated corpus of real and hostile files, plus fuzzing."""

from __future__ import annotations

import io
import re
import struct
import threading
import time
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    JPEGLossless,
    RLELossless,
)

from cxr_pneumonia import imaging
from cxr_pneumonia.config import DEFAULT_DATA_DIR, MAX_FILE_BYTES
from cxr_pneumonia.imaging import (
    ImageDecodeError,
    decode_image,
    decode_image_with_timeout,
    read_image_file,
)
from tests.dicom_files import dicom, dicom_bytes, dicom_dataset

HEIGHT, WIDTH = 80, 112
_ROWS, _COLUMNS = np.mgrid[0:HEIGHT, 0:WIDTH]
# A non-symmetric gradient using every value 0..255, so rotations and inversions show.
BASE = ((_COLUMNS + 2 * _ROWS) * 255 // (WIDTH - 1 + 2 * (HEIGHT - 1))).astype(np.uint8)
BASE_UNIT = BASE.astype(np.float32) / 255
BASE_16BIT = BASE.astype(np.uint16) * 257
SHAPE = (HEIGHT, WIDTH)
TRANSPOSED = (WIDTH, HEIGHT)
EXIF_ORIENTATION = 0x0112
# Class names, tracebacks, object reprs, addresses and markup never reach the user.
UNREADABLE = re.compile(r"Error|Exception|Traceback|object at|\b0x[0-9a-f]{4,}|[<>]")


# --- builders ---------------------------------------------------------------------------


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def gray_image(pixels: np.ndarray = BASE) -> Image.Image:
    return Image.fromarray(pixels)


def sixteen_bit(pixels: np.ndarray = BASE) -> Image.Image:
    return Image.fromarray(pixels.astype(np.uint16) * 257)


def png_8bit() -> bytes:
    return encode(gray_image(), "PNG")


def png_16bit() -> bytes:
    return encode(sixteen_bit(), "PNG")


def png_palette(transparent_index: int | None = None) -> bytes:
    image = gray_image().convert("P")
    options = {} if transparent_index is None else {"transparency": transparent_index}
    return encode(image, "PNG", **options)


def left_quarter_transparent_alpha() -> np.ndarray:
    alpha = np.full(SHAPE, 255, dtype=np.uint8)
    alpha[:, : WIDTH // 4] = 0
    return alpha


def with_left_quarter_black(gray: np.ndarray) -> np.ndarray:
    result = gray.copy()
    result[:, : WIDTH // 4] = 0
    return result


def png_rgba() -> bytes:
    rgba = np.dstack([BASE, BASE, BASE, left_quarter_transparent_alpha()])
    return encode(Image.fromarray(rgba), "PNG")


def png_la() -> bytes:
    image = Image.merge("LA", [gray_image(), Image.fromarray(left_quarter_transparent_alpha())])
    return encode(image, "PNG")


def jpeg(orientation: int | None = None) -> bytes:
    exif = Image.Exif()
    if orientation is not None:
        exif[EXIF_ORIENTATION] = orientation
    return encode(gray_image(), "JPEG", quality=95, exif=exif.tobytes())


def animated(fmt: str, **options: object) -> bytes:
    frames = [gray_image(), gray_image(255 - BASE)]
    return encode(frames[0], fmt, save_all=True, append_images=frames[1:], **options)


def float_tiff(nan: bool = False) -> bytes:
    values = BASE.astype(np.float32) * 3.5 - 100
    if nan:
        values[0, 0] = np.nan
    return encode(Image.fromarray(values), "TIFF")


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR claiming `width` x `height`, with almost no pixel data."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload)
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    chunks = chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


def zip_of_png() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("xray.png", png_8bit())
    return buffer.getvalue()


def dicom_16bit(photometric: str = "MONOCHROME2") -> bytes:
    return dicom(BASE_16BIT, photometric, RescaleSlope=2, RescaleIntercept=-1024)


def dicom_windowed(**window: float) -> bytes:
    return dicom(BASE.astype(np.uint16) * 16, bits=12, **window)


def expected_window(center: float, width: float) -> np.ndarray:
    values = BASE.astype(np.float64) * 16
    return np.clip((values - (center - 0.5)) / (width - 1) + 0.5, 0, 1)


def dicom_without_preamble() -> bytes:
    dataset = dicom_dataset(BASE)
    del dataset.file_meta
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, dataset, implicit_vr=True, little_endian=True)
    return buffer.getvalue()


def dicom_with(edit: Callable[[Dataset], None], pixels: np.ndarray = BASE) -> bytes:
    dataset = dicom_dataset(pixels)
    edit(dataset)
    return dicom_bytes(dataset)


def set_attributes(**values: object) -> Callable[[Dataset], None]:
    def edit(dataset: Dataset) -> None:
        for keyword, value in values.items():
            setattr(dataset, keyword, value)

    return edit


def remove_pixel_data(dataset: Dataset) -> None:
    del dataset.PixelData


def fake_jpeg_lossless(dataset: Dataset) -> None:
    dataset.file_meta.TransferSyntaxUID = JPEGLossless
    dataset.PixelData = encapsulate([b"\xff\xd8\xff\xc3" + bytes(64) + b"\xff\xd9"])
    dataset["PixelData"].VR = "OB"


def dicom_deflated() -> bytes:
    dataset = dicom_dataset(BASE)
    dataset.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    return dicom_bytes(dataset)


def dicom_rle() -> bytes:
    dataset = dicom_dataset(BASE)
    dataset.compress(RLELossless)
    return dicom_bytes(dataset)


def base_unit() -> np.ndarray:
    return BASE_UNIT


def decoded(build: Callable[[], bytes]) -> np.ndarray:
    return decode_image(build())


# --- the corpus -------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """A generated file that either decodes (to `shape`, optionally `expected`) or is refused."""

    name: str
    filename: str
    build: Callable[[], bytes]
    shape: tuple[int, int] | None = None
    expected: Callable[[], np.ndarray] | None = None
    atol: float = 1e-6
    refused: str | None = None


def decodes(
    name: str,
    filename: str,
    build: Callable[[], bytes],
    shape: tuple[int, int] = SHAPE,
    expected: Callable[[], np.ndarray] | None = None,
    atol: float = 1e-6,
) -> Case:
    return Case(name, filename, build, shape=shape, expected=expected, atol=atol)


def refused(name: str, filename: str, build: Callable[[], bytes], message: str) -> Case:
    return Case(name, filename, build, refused=message)


def random_bytes(size: int) -> bytes:
    return np.random.default_rng(1234).integers(0, 256, size, dtype=np.uint8).tobytes()


INFINITE_SLOPE = set_attributes(RescaleSlope="1e308", RescaleIntercept=0)
NOT_A_FORMAT = "not in an image format"
PIXEL_LIMIT = "80,000,000 pixels"
DAMAGED = "damaged or incomplete"

DECODING_CASES = [
    decodes("png 8-bit", "a.png", png_8bit, expected=base_unit),
    decodes("png 16-bit equals 8-bit", "a.png", png_16bit, expected=lambda: decoded(png_8bit)),
    decodes("png palette", "a.png", png_palette, expected=base_unit),
    decodes(
        "png palette transparent white",
        "a.png",
        lambda: png_palette(transparent_index=255),
        expected=lambda: np.where(BASE == 255, 0, BASE_UNIT),
    ),
    decodes("png rgba", "a.png", png_rgba, expected=lambda: with_left_quarter_black(BASE_UNIT)),
    decodes("png la", "a.png", png_la, expected=lambda: with_left_quarter_black(BASE_UNIT)),
    decodes("png rgb", "a.png", lambda: encode(gray_image().convert("RGB"), "PNG"),
            expected=base_unit),
    decodes("jpeg gray", "a.jpg", jpeg, expected=base_unit, atol=0.05),
    decodes("jpeg cmyk", "a.jpg", lambda: encode(gray_image().convert("CMYK"), "JPEG")),
    decodes(
        "jpeg exif orientation 6",
        "a.jpg",
        lambda: jpeg(orientation=6),
        shape=TRANSPOSED,
        expected=lambda: np.rot90(decoded(jpeg), k=-1),
        atol=0,
    ),
    decodes(
        "jpeg exif orientation 3",
        "a.jpg",
        lambda: jpeg(orientation=3),
        expected=lambda: np.rot90(decoded(jpeg), k=2),
        atol=0,
    ),
    decodes("tiff 8-bit", "a.tif", lambda: encode(gray_image(), "TIFF"), expected=base_unit),
    decodes(
        "tiff 16-bit lzw",
        "a.tif",
        lambda: encode(sixteen_bit(), "TIFF", compression="tiff_lzw"),
        expected=base_unit,
    ),
    decodes("tiff float", "a.tif", float_tiff, expected=base_unit),
    decodes("tiff multi-page first page", "a.tif", lambda: animated("TIFF"), expected=base_unit),
    decodes("webp lossless", "a.webp", lambda: encode(gray_image(), "WEBP", lossless=True),
            expected=base_unit),
    decodes("webp animated first frame", "a.webp", lambda: animated("WEBP", lossless=True),
            expected=base_unit),
    decodes("bmp", "a.bmp", lambda: encode(gray_image(), "BMP"), expected=base_unit),
    decodes("gif animated first frame", "a.gif", lambda: animated("GIF"), expected=base_unit),
    decodes("dicom 8-bit", "a.dcm", lambda: dicom(BASE), expected=base_unit),
    decodes("dicom 16-bit slope intercept", "a.dcm", dicom_16bit, expected=base_unit),
    decodes(
        "dicom monochrome1 inverted",
        "a.dcm",
        lambda: dicom_16bit("MONOCHROME1"),
        expected=lambda: 1 - decoded(dicom_16bit),
    ),
    decodes("dicom 12-bit", "a.dcm", lambda: dicom(BASE.astype(np.uint16) * 16, bits=12),
            expected=base_unit),
    decodes(
        "dicom signed",
        "a.dcm",
        lambda: dicom(BASE.astype(np.int16) * 100 - 12000),
        expected=base_unit,
    ),
    decodes(
        "dicom window center width",
        "a.dcm",
        lambda: dicom_windowed(WindowCenter=2048, WindowWidth=1024),
        expected=lambda: expected_window(2048, 1024),
        atol=1e-5,
    ),
    decodes(
        "dicom window width zero shows full range",
        "a.dcm",
        lambda: dicom_windowed(WindowCenter=2048, WindowWidth=0),
        expected=base_unit,
    ),
    decodes(
        "dicom rgb",
        "a.dcm",
        lambda: dicom(np.dstack([BASE, BASE, BASE]), "RGB", 8),
        expected=base_unit,
    ),
    decodes(
        "dicom multi-frame first frame",
        "a.dcm",
        lambda: dicom(np.stack([BASE, 255 - BASE, BASE // 2])),
        expected=base_unit,
    ),
    decodes("dicom rle compressed", "a.dcm", dicom_rle, expected=base_unit),
    decodes("dicom without preamble", "scan.dcm", dicom_without_preamble, expected=base_unit),
    decodes("dicom named .jpg", "scan.jpg", lambda: dicom(BASE), expected=base_unit),
    decodes("png named .dcm", "scan.dcm", png_8bit, expected=base_unit),
]

REFUSED_CASES = [
    refused("zero bytes", "a.png", lambda: b"", "empty"),
    refused("random bytes", "a.png", lambda: random_bytes(4096), NOT_A_FORMAT),
    refused("text renamed to png", "notes.png", lambda: b"patient notes\n" * 20, "text file"),
    refused("html", "a.png", lambda: b"<!DOCTYPE html><html><body>x</body></html>", "web page"),
    refused("pdf", "a.pdf", lambda: b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n" + bytes(200), "PDF"),
    refused("zip", "a.zip", zip_of_png, "ZIP archive"),
    refused("gzip", "a.gz", lambda: zlib.compress(png_8bit(), wbits=31), "gzip"),
    refused("svg", "a.svg", lambda: b'<?xml version="1.0"?>\n<svg width="100"></svg>', "SVG"),
    refused("heic", "a.heic", lambda: b"\x00\x00\x00\x18ftypheic" + bytes(300), "HEIC"),
    refused("ppm not supported", "a.ppm", lambda: encode(gray_image(), "PPM"), NOT_A_FORMAT),
    refused("ico not supported", "a.ico", lambda: encode(gray_image(), "ICO"), NOT_A_FORMAT),
    refused("truncated jpeg", "a.jpg", lambda: jpeg()[: len(jpeg()) // 2], DAMAGED),
    refused("jpeg header only", "a.jpg", lambda: jpeg()[:300], DAMAGED),
    refused("truncated png", "a.png", lambda: png_8bit()[: len(png_8bit()) // 2], DAMAGED),
    refused("truncated webp", "a.webp", lambda: encode(gray_image(), "WEBP")[:200], DAMAGED),
    refused("tiny 8x8", "a.png", lambda: encode(gray_image(BASE[:8, :8]), "PNG"), "too small"),
    refused("thin 112x10", "a.png", lambda: encode(gray_image(BASE[:10]), "PNG"), "too small"),
    refused("png header bomb", "a.png", lambda: png_header_only(100_000, 100_000), PIXEL_LIMIT),
    refused("png just over limit", "a.png", lambda: png_header_only(9_000, 9_000), PIXEL_LIMIT),
    refused("over byte limit", "a.png", lambda: bytes(MAX_FILE_BYTES + 1), "MB, over the limit"),
    refused("blank png", "a.png", lambda: encode(gray_image(np.full(SHAPE, 128, np.uint8)), "PNG"),
            "blank"),
    refused("float tiff with nan", "a.tif", lambda: float_tiff(nan=True), "invalid pixel values"),
    refused("dicom missing pixel data", "a.dcm", lambda: dicom_with(remove_pixel_data),
            "no pixel data"),
    refused("dicom jpeg lossless no decoder", "a.dcm", lambda: dicom_with(fake_jpeg_lossless),
            "compressed"),
    refused("dicom deflated (unbounded inflate)", "a.dcm", dicom_deflated, "compressed"),
    refused("dicom palette color", "a.dcm",
            lambda: dicom_with(set_attributes(PhotometricInterpretation="PALETTE COLOR")),
            "PALETTE"),
    refused("dicom truncated", "a.dcm", lambda: dicom(BASE)[:-2000], DAMAGED),
    refused("dicom header bomb", "a.dcm",
            lambda: dicom_with(set_attributes(Rows=65535, Columns=65535)), PIXEL_LIMIT),
    refused("dicom infinite slope", "a.dcm",
            lambda: dicom_with(INFINITE_SLOPE, BASE_16BIT),
            "invalid pixel values"),
    refused("dicom blank", "a.dcm", lambda: dicom(np.full(SHAPE, 7, np.uint16)), "blank"),
    refused("dicom tiny", "a.dcm", lambda: dicom(BASE[:8, :8]), "too small"),
    refused("preamble-less dicom not named .dcm", "scan.bin", dicom_without_preamble, NOT_A_FORMAT),
    refused("text renamed to dcm", "scan.dcm", lambda: b"not a dicom file\n" * 30, "text file"),
    refused("markup in the file name is not echoed", "<i>x<i>.png", lambda: b"text", "'ixi.png'"),
    refused("markup in a dicom code is not echoed", "a.dcm",
            lambda: dicom_with(set_attributes(PhotometricInterpretation="<b>X</b>")), "'bXb'"),
]

CORPUS = DECODING_CASES + REFUSED_CASES


def assert_valid_gray(gray: object) -> None:
    assert isinstance(gray, np.ndarray)
    assert gray.ndim == 2 and gray.dtype == np.float32
    assert np.isfinite(gray).all()
    assert gray.min() >= 0.0 and gray.max() <= 1.0


def assert_readable(message: str) -> None:
    assert message[:1].isupper() and message.endswith("."), message
    assert not UNREADABLE.search(message), message


def test_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 30
    assert len({case.name for case in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize("case", DECODING_CASES, ids=lambda case: case.name)
def test_corpus_decodes(case: Case, tmp_path: Path) -> None:
    path = tmp_path / case.filename
    path.write_bytes(case.build())
    gray = read_image_file(path)
    assert_valid_gray(gray)
    assert gray.shape == case.shape
    if case.expected is not None:
        np.testing.assert_allclose(gray, case.expected(), atol=case.atol, rtol=0)
    np.testing.assert_array_equal(decode_image(path.read_bytes(), case.filename), gray)


@pytest.mark.parametrize("case", REFUSED_CASES, ids=lambda case: case.name)
def test_corpus_refused(case: Case, tmp_path: Path) -> None:
    data = case.build()
    path = tmp_path / case.filename
    path.write_bytes(data)
    for decode in (lambda: read_image_file(path), lambda: decode_image(data, case.filename)):
        with pytest.raises(ImageDecodeError) as refusal:
            decode()
        assert case.refused in str(refusal.value)
        assert_readable(str(refusal.value))


def test_header_bomb_is_refused_without_decoding() -> None:
    data = png_header_only(100_000, 100_000)
    started = time.perf_counter()
    with pytest.raises(ImageDecodeError):
        decode_image(data, "bomb.png")
    assert time.perf_counter() - started < 0.5


def test_truncated_images_stay_refused_after_importing_the_package() -> None:
    import cxr_pneumonia.preprocessing  # noqa: F401 - importing must not relax Pillow

    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_read_image_file_reports_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImageDecodeError, match=r"File not found: absent\.png"):
        read_image_file(tmp_path / "absent.png")


@pytest.mark.parametrize(
    ("failure", "message"),
    [(MemoryError(), "too large to decode"), (RuntimeError("boom 0xdeadbeef"), DAMAGED)],
)
def test_unexpected_failures_become_refusals(
    monkeypatch: pytest.MonkeyPatch, failure: Exception, message: str
) -> None:
    def fail(image: Image.Image) -> np.ndarray:
        raise failure

    monkeypatch.setattr(imaging, "pil_to_gray_array", fail)
    with pytest.raises(ImageDecodeError, match=message) as refusal:
        decode_image(png_8bit(), "a.png")
    assert_readable(str(refusal.value))


def test_decode_with_timeout_returns_the_decoded_image() -> None:
    np.testing.assert_array_equal(decode_image_with_timeout(png_8bit(), "a.png", 5), BASE_UNIT)


def test_decode_with_timeout_passes_refusals_through() -> None:
    with pytest.raises(ImageDecodeError, match="empty"):
        decode_image_with_timeout(b"", "a.png", 5)


def test_decode_with_timeout_refuses_a_slow_decode(monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()

    def slow_decode(data: bytes, filename: str | None = None) -> np.ndarray:
        release.wait(5)
        return BASE_UNIT

    monkeypatch.setattr(imaging, "decode_image", slow_decode)
    try:
        with pytest.raises(ImageDecodeError, match=r"took longer than 0\.05 seconds"):
            decode_image_with_timeout(b"data", "a.png", 0.05)
    finally:
        release.set()


# --- variants of one real chest X-ray -----------------------------------------------------


@pytest.fixture(scope="module")
def real_xray_path() -> Path:
    folder = DEFAULT_DATA_DIR / "test" / "NORMAL"
    paths = sorted(folder.glob("*.jp*g")) if folder.is_dir() else []
    if not paths:
        pytest.skip(f"no real chest X-ray under {folder}")
    return paths[0]


@pytest.fixture(scope="module")
def real_xray(real_xray_path: Path) -> np.ndarray:
    with Image.open(real_xray_path) as image:
        return np.asarray(image.convert("L"))


def test_real_xray_decodes_as_training_expects(real_xray_path: Path, real_xray: np.ndarray) -> None:
    np.testing.assert_array_equal(read_image_file(real_xray_path), real_xray / np.float32(255))


def test_real_xray_16bit_png_matches_8bit(real_xray: np.ndarray) -> None:
    sixteen = encode(sixteen_bit(real_xray), "PNG")
    eight = encode(Image.fromarray(real_xray), "PNG")
    np.testing.assert_array_equal(decode_image(sixteen), decode_image(eight))


def test_real_xray_monochrome1_is_the_inverse_of_monochrome2(real_xray: np.ndarray) -> None:
    pixels = real_xray.astype(np.uint16) * 16
    mono2 = decode_image(dicom(pixels, "MONOCHROME2", 12, RescaleSlope=0.5, RescaleIntercept=10))
    mono1 = decode_image(dicom(pixels, "MONOCHROME1", 12, RescaleSlope=0.5, RescaleIntercept=10))
    np.testing.assert_allclose(mono1, 1 - mono2, atol=1e-6)
    span = float(real_xray.max() - real_xray.min())
    np.testing.assert_allclose(mono2, (real_xray - float(real_xray.min())) / span, atol=1e-6)


def test_real_xray_exif_rotation(real_xray: np.ndarray) -> None:
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    plain = decode_image(encode(Image.fromarray(real_xray), "JPEG", quality=90))
    rotated = decode_image(
        encode(Image.fromarray(real_xray), "JPEG", quality=90, exif=exif.tobytes())
    )
    assert rotated.shape == real_xray.shape[::-1]
    np.testing.assert_array_equal(rotated, np.rot90(plain, k=-1))


def test_real_xray_truncated_is_refused(real_xray_path: Path) -> None:
    data = real_xray_path.read_bytes()
    with pytest.raises(ImageDecodeError, match=DAMAGED):
        decode_image(data[: len(data) * 2 // 3], real_xray_path.name)


# --- fuzzing ------------------------------------------------------------------------------

SMALL = BASE[:64, :72]
SEED_FILES = [
    (encode(gray_image(SMALL), "PNG"), "seed.png"),
    (encode(sixteen_bit(SMALL), "PNG"), "seed.png"),
    (encode(gray_image(SMALL), "JPEG", quality=80), "seed.jpg"),
    (encode(gray_image(SMALL), "GIF"), "seed.gif"),
    (encode(gray_image(SMALL), "TIFF"), "seed.tif"),
    (encode(gray_image(SMALL), "WEBP"), "seed.webp"),
    (dicom(SMALL.astype(np.uint16) * 16, bits=12, WindowCenter=1000, WindowWidth=800), "seed.dcm"),
]
FUZZ_SETTINGS = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def assert_decodes_or_refuses(data: bytes, filename: str | None) -> None:
    try:
        gray = decode_image(data, filename)
    except ImageDecodeError as refusal:
        assert_readable(str(refusal))
        return
    assert_valid_gray(gray)


@st.composite
def mutated_files(draw: st.DrawFn) -> tuple[bytes, str]:
    seed, filename = draw(st.sampled_from(SEED_FILES))
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, len(data)))
        operation = draw(st.sampled_from(["flip", "truncate", "insert", "overwrite"]))
        if operation == "flip" and data:
            data[position % len(data)] ^= 1 << draw(st.integers(0, 7))
        elif operation == "truncate":
            del data[position:]
        elif operation == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=16))
        else:
            chunk = draw(st.binary(min_size=1, max_size=8))
            data[position : position + len(chunk)] = chunk
    return bytes(data), filename


@pytest.mark.filterwarnings("ignore")
@FUZZ_SETTINGS
@given(
    data=st.binary(max_size=2048),
    filename=st.sampled_from([None, "a.png", "a.jpg", "a.dcm", "a"]),
)
def test_arbitrary_bytes_decode_or_are_refused(data: bytes, filename: str | None) -> None:
    assert_decodes_or_refuses(data, filename)


@pytest.mark.filterwarnings("ignore")
@FUZZ_SETTINGS
@given(mutated_files())
def test_mutated_images_decode_or_are_refused(file: tuple[bytes, str]) -> None:
    assert_decodes_or_refuses(*file)


@pytest.mark.filterwarnings("ignore")
@FUZZ_SETTINGS
@given(body=st.binary(max_size=600))
def test_arbitrary_bytes_after_the_dicom_magic_decode_or_are_refused(body: bytes) -> None:
    assert_decodes_or_refuses(bytes(128) + b"DICM" + body, "a.dcm")


def saturated_shapes() -> bytes:
    """A drawing of shapes in strong colours on white, as PNG."""
    from PIL import ImageDraw

    picture = Image.new("RGB", (400, 300), (255, 255, 255))
    draw = ImageDraw.Draw(picture)
    draw.rectangle([20, 20, 180, 140], fill=(230, 20, 20))
    draw.ellipse([200, 40, 380, 220], fill=(20, 60, 230))
    draw.polygon([(40, 280), (160, 160), (260, 290)], fill=(250, 210, 0))
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    return buffer.getvalue()


def test_a_picture_in_strong_colours_is_not_an_x_ray():
    from cxr_pneumonia.imaging import NotAnXrayError

    with pytest.raises(NotAnXrayError, match="not an X-ray") as refused:
        decode_image(saturated_shapes())
    assert refused.value.code == "colour_picture"


@pytest.mark.parametrize("severity", [1, 2, 3])
def test_an_x_ray_with_a_colour_cast_is_still_read(data_dir, severity):
    """A phone photo of a monitor tints the X-ray (the acquisition suite's cast): that is not a colour picture."""
    gray = np.asarray(Image.open(data_dir / "test" / "NORMAL" / "IM-0001-0001.jpg").convert("L"), np.float32) / 255
    cast = np.array([1.0, 1 - 0.05 * severity, 1 - 0.12 * severity])
    buffer = io.BytesIO()
    Image.fromarray((np.clip(0.04 + 0.9 * gray[..., None] * cast, 0, 1) * 255).astype(np.uint8)).save(buffer, "JPEG")
    assert decode_image(buffer.getvalue()).shape == gray.shape
