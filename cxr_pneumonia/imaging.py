"""Decoding and validation of uploaded images: bytes in, a grayscale float array out.

`decode_image` is the one place where uploads and training images are decoded. It returns a
2-D float32 array in [0, 1] or raises `ImageDecodeError`, whose message is meant for the user.
Multi-frame inputs (animated GIF/WebP, multi-page TIFF, multi-frame DICOM) are read from their
first frame only. 8- and 16-bit images keep their absolute scale (value / 255 or / 65535);
32-bit, float and DICOM images are stretched by their min and max (DICOM after its modality
and VOI LUTs, MONOCHROME1 then inverted).
"""

from __future__ import annotations

import io
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image, ImageOps, UnidentifiedImageError
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut, apply_voi_lut, get_decoder, pixel_array
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from cxr_pneumonia.config import (
    DECODE_TIMEOUT_SECONDS,
    DECODE_WORKERS,
    MAX_DECODED_SIDE,
    MAX_FILE_BYTES,
    MAX_PIXELS,
    MIN_SIDE_PIXELS,
)

SUPPORTED_FORMATS = "JPEG, PNG, TIFF, WebP, BMP, GIF or DICOM"
# Pillow may only identify these formats (JPEG includes MPO); its other plugins stay unused.
PILLOW_FORMATS = ("JPEG", "PNG", "TIFF", "WEBP", "BMP", "GIF")
DICOM_SUFFIXES = (".dcm", ".dicom")

_DICOM_MAGIC = b"DICM"
_DICOM_MAGIC_OFFSET = 128
# pydicom inflates a deflated dataset whole and without a size limit: a zip bomb. Any file
# naming this transfer syntax anywhere is refused before pydicom reads it.
_DEFLATED_SYNTAX_BYTES = DeflatedExplicitVRLittleEndian.encode("ascii")
_DICOM_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_DICOM_MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114])
_COLOUR_MODES = frozenset({"RGB", "RGBA", "RGBa", "RGBX", "P", "PA", "CMYK", "YCbCr", "HSV"})
# A picture whose lit pixels are more than MAX_SATURATED_SHARE saturated (HSV saturation over SATURATED) is not an
# X-ray; judged on a thumbnail of COLOUR_CHECK_SIDE.
SATURATED = 0.5
MAX_SATURATED_SHARE = 0.2
COLOUR_CHECK_SIDE = 128
_SNIFF_BYTES = 1024
# Text taken from the upload (file name, DICOM codes) is shown only in these characters.
_UNSAFE_TEXT = re.compile(r"[^\w .,()\-]")
# Lower-cased starts of common files that are not images, for a more helpful refusal.
# Each has a stable code (for translations) and the words of the English message.
_NON_IMAGE_SIGNATURES = (
    (b"%pdf", "pdf"),
    (b"pk\x03\x04", "zip"),
    (b"\x1f\x8b", "gzip"),
    (b"<!doctype html", "web_page"),
    (b"<html", "web_page"),
    (b"<?xml", "xml"),
)
NON_IMAGE_KINDS = {"pdf": "a PDF document", "zip": "a ZIP archive", "gzip": "a compressed (gzip) archive",
                   "web_page": "a web page", "xml": "an XML document", "svg": "an SVG drawing",
                   "heif": "an HEIC or AVIF photo", "text": "a text file"}
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1", b"avif"})

Image.init()  # register every plugin, so that Image.open(formats=PILLOW_FORMATS) finds them
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
_DECODE_POOL = ThreadPoolExecutor(max_workers=DECODE_WORKERS, thread_name_prefix="image-decode")


class ImageDecodeError(ValueError):
    """An input that cannot be read as an image; the message is meant for the user (in English). `code` names the
    reason stably and `values` holds its numbers, so that a page can say it in another language."""

    def __init__(self, message: str, code: str = "damaged", **values: object):
        super().__init__(message)
        self.code = code
        self.values = values


class UnsupportedImageError(ImageDecodeError):
    """Bytes that are not an image in a format this app decodes: a PDF, a HEIC photo, compressed DICOM..."""


class NotAnXrayError(ImageDecodeError):
    """A readable picture that cannot be an X-ray (strong colours): refused as the input gate refuses."""


class ImageTooLargeError(ImageDecodeError):
    """An image over the byte or pixel limits, or too big or too slow to decode here."""


def read_file_bytes(path: str | Path) -> bytes:
    """The bytes of the file at `path`; ImageDecodeError if it is missing, unreadable or over MAX_FILE_BYTES."""
    path = Path(path)
    if not path.is_file():
        raise ImageDecodeError(f"File not found: {path.name}", "not_found")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise _too_large_error(path.stat().st_size)
    try:
        return path.read_bytes()
    except OSError as error:
        raise ImageDecodeError(f"The file '{path.name}' could not be opened.", "unopenable") from error


def read_image_file(path: str | Path, timeout: float | None = None) -> np.ndarray:
    """Decode the image file at `path` into a 2-D float32 array in [0, 1], within `timeout` seconds if given."""
    path = Path(path)
    data = read_file_bytes(path)
    if timeout is not None:
        return decode_image_with_timeout(data, path.name, timeout)
    return decode_image(data, filename=path.name)


def decode_image_with_timeout(
    data: bytes, filename: str | None = None, seconds: float = DECODE_TIMEOUT_SECONDS
) -> np.ndarray:
    """Run `decode_image` in a worker thread and refuse the input if it takes over `seconds`.

    A timed-out decode cannot be interrupted: it finishes in the background, holding a worker.
    """
    future = _DECODE_POOL.submit(decode_image, data, filename)
    try:
        return future.result(timeout=seconds)
    except TimeoutError:
        future.cancel()
        raise ImageTooLargeError(
            f"Reading the image took longer than {seconds:g} seconds, so it was stopped. "
            "Please upload a smaller JPEG or PNG.", "too_slow", seconds=seconds
        ) from None


def decode_image(data: bytes, filename: str | None = None) -> np.ndarray:
    """Decode image bytes (the first frame of a multi-frame file) to 2-D float32 in [0, 1]."""
    check_file_size(len(data))
    try:
        gray = _decode_pixels(data, filename)
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as error:
        raise ImageTooLargeError(f"The image has over {MAX_PIXELS:,} pixels.", "too_many_pixels",
                                 limit=MAX_PIXELS) from error
    except MemoryError as error:
        raise ImageTooLargeError("The image is too large to decode on this server.", "out_of_memory") from error
    except Exception as error:  # hostile bytes can make the decoders fail any way
        raise ImageDecodeError(_damaged_message(filename)) from error
    if gray.max() == gray.min():
        raise ImageDecodeError("The image is blank: every pixel has the same value.", "blank")
    return gray


def pil_to_gray_array(image: Image.Image) -> np.ndarray:
    """Convert a Pillow image to float32 gray in [0, 1]: 8/16-bit by depth, 32-bit by min/max."""
    if image.mode in _SIXTEEN_BIT_MODES:
        return np.asarray(image, dtype=np.float32) / np.float32(65535)
    if image.mode in ("I", "F"):
        return _stretch_to_unit(np.asarray(image))
    if image.mode == "LAB":
        image = image.getchannel("L")
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        image = _flatten_alpha(image)
    return np.asarray(image.convert("L"), dtype=np.float32) / np.float32(255)


def _decode_pixels(data: bytes, filename: str | None) -> np.ndarray:
    """Send DICOM to pydicom and everything else to Pillow."""
    if _has_dicom_magic(data):
        return _decode_dicom(data, filename)
    try:
        image = Image.open(io.BytesIO(data), formats=PILLOW_FORMATS)
    except UnidentifiedImageError:
        if filename and filename.lower().endswith(DICOM_SUFFIXES):
            return _decode_dicom(data, filename)
        raise _unrecognised_error(data, filename) from None
    with image:
        _check_dimensions(*image.size)
        factor = _reduction_factor(*image.size)
        if factor > 1 and image.format == "JPEG":  # libjpeg decodes at 1/2, 1/4 or 1/8 scale directly
            image.draft(image.mode, (-(-image.size[0] // factor), -(-image.size[1] // factor)))
        image.load()
        image = _reduced(image)
        _check_not_colourful(image)
        return pil_to_gray_array(ImageOps.exif_transpose(image))


def _check_not_colourful(image: Image.Image) -> None:
    """NotAnXrayError for a picture in strong colours (shapes, a drawing, a photo of a scene): an X-ray is grey,
    and a phone photo of one has only a colour cast (saturation under 0.4 even at the suite's strongest)."""
    if image.mode not in _COLOUR_MODES:
        return
    small = image.convert("RGB")
    small.thumbnail((COLOUR_CHECK_SIDE, COLOUR_CHECK_SIDE))
    hsv = np.asarray(small.convert("HSV"), dtype=np.float32) / 255
    lit = hsv[..., 2] > 0.15  # a dark pixel's hue is noise
    if lit.any() and float((hsv[..., 1][lit] > SATURATED).mean()) > MAX_SATURATED_SHARE:
        raise NotAnXrayError("This picture is in strong colours, so it is not an X-ray. Please upload a chest "
                             "X-ray (X-rays are grey).", "colour_picture")


def _reduction_factor(width: int, height: int) -> int:
    """The whole factor that brings the longer side to at most MAX_DECODED_SIDE."""
    return -(-max(width, height) // MAX_DECODED_SIDE)


def _reduced(image: Image.Image) -> Image.Image:
    """A large decoded image box-averaged down to at most MAX_DECODED_SIDE a side before it is turned into floats,
    so that an 80-megapixel upload costs a few tens of MB, not a few hundred (the model reads 256 px at most)."""
    factor = _reduction_factor(*image.size)
    if factor == 1:
        return image
    if image.mode in _SIXTEEN_BIT_MODES:  # reduce() takes 32-bit integers; back to 16 bits keeps the scale
        return image.convert("I").reduce(factor).convert("I;16")
    if image.mode in ("1", "P"):
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    return image.reduce(factor)


def _flatten_alpha(image: Image.Image) -> Image.Image:
    """Composite a transparent image onto black, the background of a radiograph."""
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _decode_dicom(data: bytes, filename: str | None) -> np.ndarray:
    """Decode a DICOM file's first frame through its modality LUT and VOI LUT or window."""
    if _DEFLATED_SYNTAX_BYTES in data:
        raise _undecodable_dicom_error(DeflatedExplicitVRLittleEndian)
    dataset = pydicom.dcmread(io.BytesIO(data), force=True)
    if not any(keyword in dataset for keyword in _DICOM_PIXEL_KEYWORDS):
        if _has_dicom_magic(data):
            raise UnsupportedImageError(
                f"{_the_file(filename)} is a DICOM file without an image (no pixel data); "
                "it may be a report or an index. Please upload the X-ray image itself.", "dicom_without_image"
            )
        raise _unrecognised_error(data, filename)
    _set_missing_transfer_syntax(dataset)
    _check_dimensions(int(dataset.Columns), int(dataset.Rows))
    _check_dicom_photometric(dataset)
    _check_dicom_decoder(dataset.file_meta.TransferSyntaxUID)
    frame = pixel_array(dataset, index=0)
    if dataset.PhotometricInterpretation in _DICOM_MONOCHROME and frame.ndim == 2:
        return _dicom_monochrome_to_gray(frame, dataset)
    if frame.ndim == 3 and frame.shape[2] == 3:
        return _stretch_to_unit(frame @ _LUMA_WEIGHTS)
    raise ImageDecodeError(_damaged_message(filename))


def _dicom_monochrome_to_gray(frame: np.ndarray, dataset: Dataset) -> np.ndarray:
    """Apply the modality and VOI transforms, stretch to [0, 1] and invert MONOCHROME1."""
    values = _apply_dicom_window(apply_modality_lut(frame, dataset), dataset)
    gray = _stretch_to_unit(values)
    return 1.0 - gray if dataset.PhotometricInterpretation == "MONOCHROME1" else gray


def _apply_dicom_window(values: np.ndarray, dataset: Dataset) -> np.ndarray:
    """Apply the VOI LUT or window; invalid window settings (width 0) show the full range."""
    try:
        return apply_voi_lut(values, dataset)
    except ValueError:
        return values


def _set_missing_transfer_syntax(dataset: Dataset) -> None:
    """Give a file without a meta header the transfer syntax it was actually read with."""
    if "TransferSyntaxUID" in dataset.file_meta:
        return
    implicit_vr, little_endian = dataset.original_encoding
    if implicit_vr:
        dataset.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    elif little_endian:
        dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    else:
        dataset.file_meta.TransferSyntaxUID = ExplicitVRBigEndian


def _check_dicom_photometric(dataset: Dataset) -> None:
    """Accept grayscale and three-channel colour DICOM; refuse palettes and other layouts."""
    photometric = str(dataset.get("PhotometricInterpretation", ""))
    if photometric in _DICOM_MONOCHROME or dataset.get("SamplesPerPixel") == 3:
        return
    raise UnsupportedImageError(
        f"This DICOM file stores its pixels as '{_safe_text(photometric)}', which this app "
        "cannot display. Please export the X-ray as grayscale (MONOCHROME) DICOM, PNG or JPEG.",
        "dicom_colour_layout", layout=_safe_text(photometric)
    )


def _check_dicom_decoder(syntax: UID) -> None:
    """Refuse compressed DICOM whose decoder is not installed, before trying to decode it."""
    try:
        available = get_decoder(syntax).is_available
    except NotImplementedError:
        available = False
    if not available:
        raise _undecodable_dicom_error(syntax)


def _stretch_to_unit(values: np.ndarray) -> np.ndarray:
    """Map finite values linearly onto [0, 1] by their min and max; a constant maps to 0."""
    values = np.array(values, dtype=np.float64)  # a copy, scaled in place below
    if not np.isfinite(values).all():
        raise ImageDecodeError("The image has invalid pixel values (not-a-number or infinite).", "invalid_pixels")
    values *= 0.5  # so that the span of extreme float pixels cannot overflow to infinity
    low, high = values.min(), values.max()
    if high == low:
        return np.zeros(values.shape, dtype=np.float32)
    values -= low
    values /= high - low
    return values.astype(np.float32)


def check_file_size(size_bytes: int) -> None:
    """Refuse an empty file, or one over the byte limit, before reading it whole."""
    if size_bytes == 0:
        raise ImageDecodeError("The file is empty.", "empty")
    if size_bytes > MAX_FILE_BYTES:
        raise _too_large_error(size_bytes)


def _check_dimensions(width: int, height: int) -> None:
    """Refuse too many or too few pixels from the header, before any pixel is decoded."""
    if width * height > MAX_PIXELS:
        raise ImageTooLargeError(
            f"The image is {width}x{height} pixels, over the limit of {MAX_PIXELS:,} pixels.", "too_many_pixels",
            limit=MAX_PIXELS
        )
    if min(width, height) < MIN_SIDE_PIXELS:
        raise ImageDecodeError(
            f"The image is {width}x{height} pixels: too small to read; "
            f"each side needs at least {MIN_SIDE_PIXELS} pixels.", "too_small", width=width, height=height,
            minimum=MIN_SIDE_PIXELS
        )


def _has_dicom_magic(data: bytes) -> bool:
    return data[_DICOM_MAGIC_OFFSET : _DICOM_MAGIC_OFFSET + len(_DICOM_MAGIC)] == _DICOM_MAGIC


def _describe_non_image(data: bytes) -> str | None:
    """The code (a key of NON_IMAGE_KINDS) of a common kind of file that is not an image, if it is one."""
    head = data[:_SNIFF_BYTES].lstrip().lower()
    if b"<svg" in head:
        return "svg"
    for signature, code in _NON_IMAGE_SIGNATURES:
        if head.startswith(signature):
            return code
    if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS:
        return "heif"
    if all(32 <= byte < 127 or byte in b"\t\n\r" for byte in data[:_SNIFF_BYTES]):
        return "text"
    return None


def _unrecognised_error(data: bytes, filename: str | None) -> UnsupportedImageError:
    kind = _describe_non_image(data)
    found = f"is {NON_IMAGE_KINDS[kind]}, not an image" if kind else "is not in an image format this app can read"
    message = f"{_the_file(filename)} {found}. Please upload the X-ray as a {SUPPORTED_FORMATS} file."
    return UnsupportedImageError(message, "not_an_image", kind=kind) if kind else \
        UnsupportedImageError(message, "unknown_format")


def _undecodable_dicom_error(syntax: UID) -> UnsupportedImageError:
    return UnsupportedImageError(
        "This DICOM file is compressed in a way this app cannot decode "
        f"({_safe_text(syntax.name)}). Please export it uncompressed, or as PNG or JPEG.",
        "dicom_compressed", compression=_safe_text(syntax.name)
    )


def _damaged_message(filename: str | None) -> str:
    return (
        f"{_the_file(filename)} is damaged or incomplete (it may have been cut off during "
        "upload), so it could not be read as an image."
    )


def _the_file(filename: str | None) -> str:
    return f"The file '{_safe_text(Path(filename).name)}'" if filename else "The file"


def _safe_text(text: str) -> str:
    """Text from the upload, cut short and limited to harmless characters for display."""
    return _UNSAFE_TEXT.sub("", text)[:80]


def _too_large_error(size_bytes: int) -> ImageTooLargeError:
    megabytes, limit = size_bytes / 1e6, MAX_FILE_BYTES / 1e6
    return ImageTooLargeError(f"The file is {megabytes:.1f} MB, over the limit of {limit:.0f} MB.", "too_many_bytes",
                              megabytes=megabytes, limit=limit)
