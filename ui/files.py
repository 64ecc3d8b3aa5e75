"""Gradio components that handle our files, and how long the page keeps them on disk."""

from __future__ import annotations

import os
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

import gradio as gr
import numpy as np
from gradio.utils import get_upload_folder, is_in_or_equal

from cxr_pneumonia.explain import display_image, to_uint8
from cxr_pneumonia.imaging import read_image_file
from cxr_pneumonia.service import encode_jpeg

THUMBNAIL_SIDE = 192
UPLOAD_WAIT_SECONDS = 3.0


class RawImageUpload(gr.Image):
    """gr.Image that hands the uploaded file over undecoded, so our decoder judges every upload."""

    def get_block_name(self) -> str:
        """Render with gr.Image's Svelte component; the class name would make the browser look for a custom one."""
        return "image"

    def preprocess(self, payload):
        if payload is not None and payload.path and not (payload.url or "").startswith("data:"):
            return payload.path
        return super().preprocess(payload)


class CachedJpegImage(gr.Image):
    """Output gr.Image whose pixels are written once, as a JPEG of their own, to Gradio's cache."""

    def get_block_name(self) -> str:
        return "image"

    def postprocess(self, value):
        if isinstance(value, np.ndarray):
            value = cache_jpeg(value, self.GRADIO_CACHE)
        return super().postprocess(value)


def cache_jpeg(pixels: np.ndarray, cache: str | None = None) -> str:
    """An image as a JPEG in a folder of its own in Gradio's cache, written through a temporary file and a rename
    (so it is never served half-written); its path. Named at random: never after an upload."""
    folder = Path(cache or get_upload_folder()) / f"cxr-{uuid.uuid4().hex}"
    folder.mkdir(parents=True)
    descriptor, staging = tempfile.mkstemp(dir=folder, prefix=".image-")
    with os.fdopen(descriptor, "wb") as staged:
        staged.write(encode_jpeg(pixels))
    target = folder / "image.jpeg"
    os.replace(staging, target)
    return str(target)


def thumbnail(path: Path) -> str:
    """A small JPEG of an example image in Gradio's cache, for the examples gallery (kept while the app runs)."""
    return cache_jpeg(to_uint8(display_image(read_image_file(path), THUMBNAIL_SIDE)))


def wait_for_file(path: str | Path, seconds: float = UPLOAD_WAIT_SECONDS) -> bool:
    """True once `path` is a file. Gradio moves an upload into place in a background task after answering the
    upload, so the event it triggers can start a moment before the file is there."""
    deadline = time.monotonic() + seconds
    while not Path(path).is_file():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def is_upload(path: str | Path) -> bool:
    """True for a file Gradio received (an upload, or its copy of an input): ours to remove."""
    return is_in_or_equal(str(path), get_upload_folder())


def remove_files(paths: Iterable[str | Path]) -> None:
    """Remove each file and its folder when that is left empty (Gradio keeps each file in a folder of its own)."""
    for path in map(Path, paths):
        path.unlink(missing_ok=True)
        try:
            path.parent.rmdir()
        except OSError:
            pass  # other files remain


def remove_later(paths: Iterable[str | Path], seconds: float) -> None:
    """Remove the files after `seconds`: long enough for the browser to fetch them, then gone from disk."""
    timer = threading.Timer(seconds, remove_unchanged, [{Path(path): identity(path) for path in paths}])
    timer.daemon = True
    timer.start()


def remove_unchanged(identities: dict[Path, tuple[int, int] | None]) -> None:
    """Remove each file still the one seen when its removal was planned. Gradio names an upload by its content,
    so the same file uploaded again lands on the same path, and its analysis must still find it."""
    remove_files([path for path, seen in identities.items() if seen is None or identity(path) == seen])


def identity(path: str | Path) -> tuple[int, int] | None:
    """The file's inode and modification time (a new upload replaces the file, never rewrites it), or None."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_ino, status.st_mtime_ns
