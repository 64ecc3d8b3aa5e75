"""Zips of real labelled X-rays, and hostile ones, built in a test's temporary directory (never in the repo)."""

from __future__ import annotations

import re
import struct
import zipfile
from pathlib import Path

from cxr_pneumonia.config import DEFAULT_DATA_DIR, LABELS

KERMANY_TEST = DEFAULT_DATA_DIR / "test"
BOMB_BYTES = 300 * 1000 * 1000


def labelled_folder(root: Path, per_class: int, source: Path = KERMANY_TEST, offset: int = 0) -> Path:
    """root/NORMAL and root/PNEUMONIA with symlinks to `per_class` real images of each class (sorted, from
    `offset`): the folder `python -m training.evaluate --data root` reads."""
    for label in LABELS:
        (root / label).mkdir(parents=True)
        for image in sorted((source / label).iterdir())[offset : offset + per_class]:
            (root / label / image.name).symlink_to(image)
    return root


def zip_folder(folder: Path, target: Path, prefix: str = "my_xrays/") -> Path:
    """The images of `folder` (NORMAL then PNEUMONIA, sorted: training.evaluate's order) zipped under `prefix`."""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as archive:
        for label in LABELS:
            for image in sorted((folder / label).iterdir()):
                archive.write(image, f"{prefix}{label}/{image.name}")
    return target


def zip_entries(target: Path, entries: dict[str, bytes]) -> Path:
    """A deflated zip of the given names and contents."""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return target


def deflate_bomb(target: Path, size: int = BOMB_BYTES, name: str = "NORMAL/bomb.jpg") -> Path:
    """One entry of `size` zero bytes, deflated (300 MB becomes about 300 KB), written in 1 MB pieces."""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive, archive.open(name, "w") as entry:
        zeros = bytes(1_000_000)
        for _ in range(size // len(zeros)):
            entry.write(zeros)
    return target


def lying_bomb(target: Path, declared: int = 1000) -> Path:
    """deflate_bomb with its local and central headers claiming the entry inflates to `declared` bytes."""
    data = bytearray(deflate_bomb(target).read_bytes())
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        for match in re.finditer(re.escape(signature), bytes(data)):
            data[match.start() + offset : match.start() + offset + 4] = struct.pack("<I", declared)
    target.write_bytes(bytes(data))
    return target


def symlink_entry(archive: zipfile.ZipFile, name: str, points_to: str) -> None:
    """A Unix symbolic link stored in a zip (as Info-ZIP's `zip --symlinks` stores it)."""
    info = zipfile.ZipInfo(name)
    info.external_attr = (0o120777 << 16)
    archive.writestr(info, points_to)


def encrypted_entry_zip(target: Path, entries: dict[str, bytes]) -> Path:
    """A zip whose entries carry the encrypted flag (as a password-protected zip's do): zipfile cannot write one."""
    zip_entries(target, entries)
    data = bytearray(target.read_bytes())
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # the general purpose flags
        for match in re.finditer(re.escape(signature), bytes(data)):
            flags = struct.unpack_from("<H", data, match.start() + offset)[0]
            struct.pack_into("<H", data, match.start() + offset, flags | 0x1)
    target.write_bytes(bytes(data))
    return target
