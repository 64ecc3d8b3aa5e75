"""Changes of acquisition: how the same chest X-ray looks when another site, device or person produced the file.

Each change takes a decoded grey image in [0, 1] (2-D, or 3-D with the grey image in channel 0 and masks that
move with it in the other channels), a severity and a random generator, and returns the changed image. Severity
0 is the identity; the robustness suite (training.robustness) measures severities 1, 2 and 3, and training draws
severities in (0, TRAINING_MAX_SEVERITY] of the kinds in TRAINING_CHANGES. Every size is relative to the image,
so a change means the same on a 256-pixel file and on a 2,000-pixel one.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy.ndimage import gaussian_filter

Change = Callable[[np.ndarray, float, np.random.Generator], np.ndarray]

SEVERITIES = (1, 2, 3)
# Training draws each of its changes at a severity uniform in (0, this]; severity 3 stays unseen.
TRAINING_MAX_SEVERITY = 2.0
# Noise, JPEG blocks and grain are made on a grid of this many pixels across the short side, whatever the file's
# resolution, as a detector of about this size would make them.
DETECTOR_SIDE = 512
MARKERS = ("L", "R", "AP", "PORTABLE")


def _grey(image: np.ndarray) -> np.ndarray:
    return image[..., 0] if image.ndim == 3 else image


def _with_grey(image: np.ndarray, grey: np.ndarray) -> np.ndarray:
    """`image` with its grey channel replaced (masks untouched)."""
    grey = np.clip(grey, 0.0, 1.0).astype(np.float32)
    if image.ndim == 2:
        return grey
    out = image.astype(np.float32, copy=True)
    out[..., 0] = grey
    return out


def _resize(grey: np.ndarray, height: int, width: int) -> np.ndarray:
    image = Image.fromarray(grey.astype(np.float32), mode="F")
    return np.asarray(image.resize((width, height), Image.Resampling.BILINEAR), dtype=np.float32)


def _each_channel(image: np.ndarray, transform: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """A geometric transform applied alike to the grey image and to every mask channel."""
    if image.ndim == 2:
        return transform(image)
    return np.stack([transform(image[..., c]) for c in range(image.shape[2])], axis=-1)


def _detector_grid(shape: tuple[int, int]) -> tuple[int, int]:
    """The (height, width) of the detector-sized grid for an image of `shape`."""
    scale = DETECTOR_SIDE / min(shape)
    return max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale))


def _detector_field(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Unit Gaussian noise made on the detector grid and brought to the image's size."""
    grid = _detector_grid(shape)
    noise = rng.standard_normal(grid, dtype=np.float32)
    return _resize(noise, *shape) if grid != shape else noise


def _jpeg_round_trip(grey: np.ndarray, quality: int) -> np.ndarray:
    """The grey image compressed at `quality` on the detector grid, as an archive of such files would hold it."""
    height, width = grey.shape
    small = _resize(grey, *_detector_grid(grey.shape))
    buffer = io.BytesIO()
    Image.fromarray((np.clip(small, 0, 1) * 255).round().astype(np.uint8)).save(buffer, "JPEG", quality=quality)
    decoded = np.asarray(Image.open(buffer), dtype=np.float32) / 255
    return _resize(decoded, height, width)


# Texture and noise.

def blur(image: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """A softer detector or a resampled file: Gaussian blur of 0.4 % of the short side per severity."""
    grey = _grey(image)
    return _with_grey(image, gaussian_filter(grey, 0.004 * severity * min(grey.shape)))


def sensor_noise(image: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Quantum and read noise of a lower dose: Gaussian, 2.5 % of the range per severity, stronger where the film is
    dark (fewer photons), on a detector-sized grid."""
    grey = _grey(image)
    sigma = 0.025 * severity * (1.25 - 0.5 * grey)
    return _with_grey(image, grey + sigma * _detector_field(grey.shape, rng))


def jpeg(image: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """JPEG compression of the detector-sized file: quality 40, 20 and 10 at severities 1, 2 and 3."""
    quality = round(80 / 2**severity)
    return _with_grey(image, _jpeg_round_trip(_grey(image), max(quality, 5)))


def low_resolution(image: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """A file saved small and enlarged again: the short side down to 384, 192 and 96 pixels, then back."""
    grey = _grey(image)
    height, width = grey.shape
    side = 768 / 2 ** severity
    scale = min(1.0, side / min(height, width))
    small = _resize(grey, max(8, round(height * scale)), max(8, round(width * scale)))
    return _with_grey(image, _resize(small, height, width))


def edge_enhancement(image: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """The unsharp mask many X-ray systems apply by default: the image plus 0.75 per severity times its difference
    from a Gaussian blur of 1 % of the short side."""
    grey = _grey(image)
    detail = grey - gaussian_filter(grey, 0.01 * min(grey.shape))
    return _with_grey(image, grey + 0.75 * severity * detail)


# Geometry and framing (masks move with the image).

def rotation(image: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """A patient or detector tilted by 5 degrees per severity, either way, corners black."""
    degrees = 5.0 * severity * rng.choice((-1.0, 1.0))

    def turn(channel: np.ndarray) -> np.ndarray:
        turned = Image.fromarray(channel.astype(np.float32), mode="F").rotate(degrees, Image.Resampling.BILINEAR)
        return np.asarray(turned, dtype=np.float32)

    return _each_channel(image, turn)


def zoom_out(image: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """A wider field: the image shrunk to 1 / (1 + 0.2 x severity) of each side inside dark borders."""
    height, width = _grey(image).shape
    scale = 1.0 / (1.0 + 0.2 * severity)
    inner_h, inner_w = max(1, round(height * scale)), max(1, round(width * scale))
    top = int(rng.integers(0, height - inner_h + 1))
    left = int(rng.integers(0, width - inner_w + 1))
    background = float(rng.uniform(0.0, 0.08))

    def shrink(channel: np.ndarray, fill: float) -> np.ndarray:
        out = np.full((height, width), fill, dtype=np.float32)
        out[top : top + inner_h, left : left + inner_w] = _resize(channel, inner_h, inner_w)
        return out

    if image.ndim == 2:
        return shrink(image, background)
    return np.stack([shrink(image[..., c], background if c == 0 else 0.0) for c in range(image.shape[2])], axis=-1)


def crop(image: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """A tighter field: a window of 1 - 0.1 x severity of each side, somewhere in the image."""
    height, width = _grey(image).shape
    keep = 1.0 - 0.1 * severity
    inner_h, inner_w = max(1, round(height * keep)), max(1, round(width * keep))
    top = int(rng.integers(0, height - inner_h + 1))
    left = int(rng.integers(0, width - inner_w + 1))
    return image[top : top + inner_h, left : left + inner_w].copy()


def collimation(image: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Unexposed (white) collimator bands over two to four edges, each up to 4 % of its side per severity."""
    grey = _grey(image).copy()
    height, width = grey.shape
    shares = rng.uniform(0.5, 1.0, 4) * 0.04 * severity
    shares[rng.permutation(4)[: int(rng.integers(0, 3))]] = 0.0
    top, bottom = round(shares[0] * height), round(shares[1] * height)
    left, right = round(shares[2] * width), round(shares[3] * width)
    grey[:top], grey[height - bottom :], grey[:, :left], grey[:, width - right :] = 1.0, 1.0, 1.0, 1.0
    return _with_grey(image, grey)


def text_markers(image: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Burned-in white markers ("L", "R", "AP", "PORTABLE"): one per severity step, each 3 % of the height per
    severity tall, near the edges."""
    grey = _grey(image)
    height, width = grey.shape
    canvas = Image.fromarray((np.clip(grey, 0, 1) * 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=max(6, round(0.03 * severity * height)))
    for _ in range(max(1, int(np.ceil(severity)))):
        text = str(rng.choice(MARKERS))
        x = float(rng.choice((rng.uniform(0.02, 0.2), rng.uniform(0.6, 0.85)))) * width
        y = float(rng.choice((rng.uniform(0.02, 0.15), rng.uniform(0.8, 0.92)))) * height
        draw.text((x, y), text, fill=255, font=font)
    return _with_grey(image, np.asarray(canvas, dtype=np.float32) / 255)


# Grey levels.

def gamma(image: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Another exposure curve: gamma 1.5 to the power of +-severity."""
    return _with_grey(image, _grey(image) ** (1.5 ** (severity * rng.choice((-1.0, 1.0)))))


def window(image: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """A narrower display window: the grey range cut to 1 - 0.2 x severity of its width, saturating both ends."""
    width = 1.0 - 0.2 * severity
    low = float(rng.uniform(0.0, 1.0 - width))
    return _with_grey(image, (_grey(image) - low) / width)


def negative(image: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Inverted grey levels (bones dark), as a MONOCHROME1 file read without its flag, with the window narrowed by
    0.1 per severity step above 1."""
    inverted = _with_grey(image, 1.0 - _grey(image))
    return window(inverted, max(0.0, severity - 1.0) / 2, rng) if severity > 1 else inverted


# A photograph of the film or monitor, after CheXphoto (Phillips et al. 2020).

def phone_photo(image: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """The X-ray shown on a monitor and photographed with a phone: a dark bezel, perspective and tilt, a colour
    cast, glare, noise and JPEG, then turned back to grey the way the app's decoder does."""
    grey = _grey(image)
    height, width = grey.shape
    cast = np.array([1.0, 1.0 - 0.05 * severity * rng.uniform(0.5, 1), 1.0 - 0.12 * severity * rng.uniform(0.5, 1)])
    shown = 0.04 + 0.9 * grey[..., None] * cast
    border = 0.04 * severity
    corners = _perspective_corners(width, height, border, 0.02 * severity, rng)
    photo = Image.fromarray((np.clip(shown, 0, 1) * 255).astype(np.uint8), "RGB").transform(
        (width, height), Image.Transform.PERSPECTIVE, _perspective_coefficients(corners, width, height),
        Image.Resampling.BILINEAR, fillcolor=tuple(int(v) for v in rng.integers(5, 30, 3)))
    pixels = np.asarray(photo, dtype=np.float32) / 255
    pixels = pixels + _glare(grey.shape, 0.12 * severity, rng)[..., None]
    pixels = pixels + 0.012 * severity * _detector_field(grey.shape, rng)[..., None]
    buffer = io.BytesIO()
    Image.fromarray((np.clip(pixels, 0, 1) * 255).astype(np.uint8), "RGB").save(
        buffer, "JPEG", quality=int(90 - 15 * severity))
    # The decoder's own grey conversion (ITU-R 601 luma), as for any colour upload.
    photographed = np.asarray(Image.open(buffer).convert("L"), dtype=np.float32) / 255
    if image.ndim == 2:
        return photographed
    masks = [_warp(image[..., c], corners, width, height) for c in range(1, image.shape[2])]
    return np.stack([photographed, *masks], axis=-1)


def _perspective_corners(width: int, height: int, border: float, skew: float, rng: np.random.Generator
                         ) -> np.ndarray:
    """Where the image's four corners land in the photo: inside a bezel of `border`, each moved by up to `skew`."""
    base = np.array([[border, border], [1 - border, border], [1 - border, 1 - border], [border, 1 - border]])
    return (base + rng.uniform(-skew, skew, (4, 2))) * np.array([width, height])


def _perspective_coefficients(corners: np.ndarray, width: int, height: int) -> tuple[float, ...]:
    """PIL's 8 coefficients mapping photo pixels back to image pixels, given where the image corners land."""
    source = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float64)
    rows, values = [], []
    for (x, y), (u, v) in zip(corners, source, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        values += [u, v]
    return tuple(np.linalg.solve(np.array(rows), np.array(values)))


def _warp(channel: np.ndarray, corners: np.ndarray, width: int, height: int) -> np.ndarray:
    image = Image.fromarray(channel.astype(np.float32), mode="F")
    warped = image.transform((width, height), Image.Transform.PERSPECTIVE,
                             _perspective_coefficients(corners, width, height), Image.Resampling.BILINEAR)
    return np.asarray(warped, dtype=np.float32)


def _glare(shape: tuple[int, int], strength: float, rng: np.random.Generator) -> np.ndarray:
    """A soft bright blob of a lamp's reflection, of `strength` at its centre."""
    height, width = shape
    cy, cx = rng.uniform(0.1, 0.9) * height, rng.uniform(0.1, 0.9) * width
    radius = rng.uniform(0.15, 0.35) * min(shape)
    rows = np.exp(-((np.arange(height) - cy) ** 2) / (2 * radius**2))
    columns = np.exp(-((np.arange(width) - cx) ** 2) / (2 * radius**2))
    return (strength * np.outer(rows, columns)).astype(np.float32)


CHANGES: dict[str, Change] = {
    "blur": blur,
    "sensor_noise": sensor_noise,
    "jpeg": jpeg,
    "low_resolution": low_resolution,
    "edge_enhancement": edge_enhancement,
    "rotation": rotation,
    "zoom_out": zoom_out,
    "crop": crop,
    "collimation": collimation,
    "text_markers": text_markers,
    "gamma": gamma,
    "window": window,
    "negative": negative,
    "phone_photo": phone_photo,
}
# Kept out of training, so that the suite measures kinds the model never saw: JPEG and low resolution (close
# cousins of blur and noise, made another way), text markers and a narrowed window.
HELD_OUT_CHANGES = ("jpeg", "low_resolution", "text_markers", "window")
TRAINING_CHANGES = tuple(name for name in CHANGES if name not in HELD_OUT_CHANGES)


def apply_change(name: str, image: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """The change `name` at `severity` (0: the image as it is, copied)."""
    if name not in CHANGES:
        raise ValueError(f"unknown change {name!r}; choose one of {', '.join(CHANGES)}")
    if severity <= 0:
        return np.array(image, dtype=np.float32, copy=True)
    return np.asarray(CHANGES[name](np.asarray(image, dtype=np.float32), float(severity), rng), dtype=np.float32)


def random_acquisition(image: np.ndarray, rng: np.random.Generator, changes: tuple[str, ...] = TRAINING_CHANGES,
                       probability: float = 0.75, max_changes: int = 2) -> np.ndarray:
    """Training augmentation: with `probability`, one to `max_changes` changes drawn from `changes`, each at a
    severity uniform in (0, TRAINING_MAX_SEVERITY], in random order; otherwise the image as it is."""
    if rng.random() >= probability:
        return image
    count = int(rng.integers(1, max_changes + 1))
    for name in rng.choice(changes, size=count, replace=False):
        image = apply_change(str(name), image, float(rng.uniform(0.0, TRAINING_MAX_SEVERITY)) + 1e-3, rng)
    return image
