"""A zip of labelled X-rays read safely into a temporary directory, removed when done.

Two layouts: folders named NORMAL and PNEUMONIA at any depth (the nearest such folder gives the label), or a
labels.csv with the columns filename,label beside the images (its names are relative to its own folder; it wins
over the folders). Entries with an absolute path or `..` refuse the whole zip (400). Nested zips, symlinks and
files that are not images by name are ignored and listed, each with a code (IGNORED_REASONS says it in English).
Every refusal is an ArchiveError whose English message the REST API returns and whose `code` and `values` let a page
say it in another language. Limits (config): MAX_ZIP_IMAGES images, each entry at
most MAX_ZIP_ENTRY_BYTES and all at most MAX_ZIP_TOTAL_BYTES inflated, checked from the declared sizes before
anything is read and again on the bytes actually inflated, in chunks, so a bomb never fills memory (413).
"""

from __future__ import annotations

import csv
import io
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from cxr_pneumonia.config import (
    IMAGE_FILE_SUFFIXES,
    LABELS,
    MAX_ZIP_ENTRY_BYTES,
    MAX_ZIP_IMAGES,
    MAX_ZIP_TOTAL_BYTES,
)

LABELS_FILENAME = "labels.csv"
MAX_LABELS_FILE_BYTES = 5 * 1024 * 1024
# A central directory this long is not a set of X-rays; refused before Python builds an object per entry.
MAX_ZIP_ENTRIES = 5 * MAX_ZIP_IMAGES
CHUNK_BYTES = 1024 * 1024
ENCRYPTED_FLAG = 0x1  # bit 0 of a zip entry's general purpose flags
LABEL_ALIASES = {"normal": "NORMAL", "0": "NORMAL", "pneumonia": "PNEUMONIA", "1": "PNEUMONIA"}
LAYOUT_HELP = ("Put the images in folders named NORMAL and PNEUMONIA (at any depth), or add a labels.csv with "
               "the columns filename,label beside them.")


# Why an entry is not read, by code: the English the REST API and the CSV show (the page has its own words).
IGNORED_REASONS = {
    "symlink": "a symbolic link: links are not followed",
    "nested_zip": "a zip inside the zip: nested zips are not opened",
    "hidden": "a hidden or system file",
    "not_an_image": "not an image by its name",
}


class ArchiveError(ValueError):
    """A zip this app refuses whole, or (carried by an ArchiveImage, never raised) an entry it cannot read out of the
    zip. The message is meant for the user (in English); `code` names the reason stably and `values` holds its
    particulars, so that a page can say it in another language; `status` is the HTTP answer."""

    status = 400

    def __init__(self, message: str, code: str = "not_a_zip", **values: object):
        super().__init__(message)
        self.code = code
        self.values = values


class ArchiveTooLargeError(ArchiveError):
    """A zip over a limit: too many images, or an entry or the whole too large once inflated."""

    status = 413


@dataclass(frozen=True)
class ArchiveImage:
    """A labelled image entry: its name in the zip, its label, and where it was extracted (None, with the
    reason in `reason`, when it could not be read out of the zip)."""

    name: str
    label: str
    path: Path | None
    reason: ArchiveError | None = None

    @property
    def error(self) -> str | None:
        """Why the entry could not be read out of the zip, in English; None when it was."""
        return None if self.reason is None else str(self.reason)


@dataclass
class LabelledArchive:
    """What a zip holds: the labelled images, the images without a label, and the entries ignored (name and the code
    of why: a key of IGNORED_REASONS)."""

    images: list[ArchiveImage] = field(default_factory=list)
    unlabelled: list[str] = field(default_factory=list)
    ignored: list[tuple[str, str]] = field(default_factory=list)
    layout: str = "folders"


@contextmanager
def open_labelled_zip(source: str | Path | BinaryIO) -> Iterator[LabelledArchive]:
    """The zip's labelled images, extracted into a temporary directory that is removed on leaving."""
    if not isinstance(source, str | Path):
        source.seek(0)
    check_entry_count(source)
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise ArchiveError("This file is not a zip archive that can be read.", "not_a_zip") from None
    with archive, tempfile.TemporaryDirectory(prefix="cxr-evaluate-") as directory:
        yield read_archive(archive, Path(directory))


def check_entry_count(source: str | Path | BinaryIO) -> None:
    """Refuse (413) a zip whose end record announces more than MAX_ZIP_ENTRIES entries."""
    handle = open(source, "rb") if isinstance(source, str | Path) else source
    try:
        end = zipfile._EndRecData(handle)  # the stdlib's reader of the end record; ZipFile would read every entry
    except OSError:
        end = None
    finally:
        if handle is not source:
            handle.close()
        else:
            source.seek(0)
    if end is not None and end[zipfile._ECD_ENTRIES_TOTAL] > MAX_ZIP_ENTRIES:
        entries = end[zipfile._ECD_ENTRIES_TOTAL]
        raise ArchiveTooLargeError(f"The zip has {entries:,} entries; at most {MAX_ZIP_IMAGES:,} images can be "
                                   "evaluated at once.", "too_many_entries", entries=entries,
                                   max_images=MAX_ZIP_IMAGES)


def read_archive(archive: zipfile.ZipFile, directory: Path) -> LabelledArchive:
    """Check every entry, then extract the labelled images into `directory`."""
    infos = [info for info in archive.infolist() if not info.is_dir()]
    for info in infos:
        check_safe_name(info.filename)
    result = LabelledArchive()
    candidates = []
    for info in infos:
        ignored = ignore_reason(info)
        if ignored:
            result.ignored.append((info.filename, ignored))
        elif not is_labels_file(info):
            candidates.append(info)
    check_declared_sizes(candidates)
    csv_labels = read_labels_files(archive, [info for info in infos if is_labels_file(info)])
    result.layout = LABELS_FILENAME if csv_labels else "folders"
    budget = InflateBudget()
    for index, info in enumerate(candidates):
        label = csv_labels.get(str(entry_path(info.filename))) or folder_label(info.filename)
        if label is None:
            result.unlabelled.append(info.filename)
        else:
            result.images.append(extract_image(archive, info, label, directory / f"{index:05d}", budget))
    return result


def check_safe_name(name: str) -> None:
    """Refuse the whole zip (400) for an entry with an absolute path or a `..` component."""
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or (parts and parts[0].endswith(":")) or ".." in parts:
        raise ArchiveError(f"The zip holds an entry with an unsafe path ({shown_name(name)}): absolute paths "
                           "and '..' are refused. Zip the folder itself, with relative paths.", "unsafe_path",
                           name=shown_name(name))


def shown_name(name: str) -> str:
    """An entry name quoted for a message, cut to a sensible length."""
    return repr(name if len(name) <= 80 else name[:77] + "...")


def ignore_reason(info: zipfile.ZipInfo) -> str | None:
    """Why an entry is not read, as a key of IGNORED_REASONS: a symlink, a nested zip, system metadata or not an
    image by name; else None."""
    path = entry_path(info.filename)
    if stat.S_ISLNK(info.external_attr >> 16):
        return "symlink"
    if path.suffix.lower() == ".zip":
        return "nested_zip"
    if "__MACOSX" in path.parts or path.name.startswith("."):
        return "hidden"
    if path.name.lower() != LABELS_FILENAME and path.suffix.lower() not in IMAGE_FILE_SUFFIXES:
        return "not_an_image"
    return None


def is_labels_file(info: zipfile.ZipInfo) -> bool:
    return entry_path(info.filename).name.lower() == LABELS_FILENAME


def check_declared_sizes(infos: list[zipfile.ZipInfo]) -> None:
    """Refuse (413) too many images, or an entry or a total over the limits by the sizes the zip declares."""
    if len(infos) > MAX_ZIP_IMAGES:
        raise ArchiveTooLargeError(f"The zip holds {len(infos):,} images; at most {MAX_ZIP_IMAGES:,} can be "
                                   "evaluated at once. Split it into smaller zips.", "too_many_images",
                                   images=len(infos), max_images=MAX_ZIP_IMAGES)
    for info in infos:
        if info.file_size > MAX_ZIP_ENTRY_BYTES:
            raise entry_too_large(info.filename, info.file_size)
    total = sum(info.file_size for info in infos)
    if total > MAX_ZIP_TOTAL_BYTES:
        raise total_too_large(total)


def entry_too_large(name: str, size: int) -> ArchiveTooLargeError:
    mebibytes, limit = size / 2**20, MAX_ZIP_ENTRY_BYTES / 2**20
    return ArchiveTooLargeError(f"The entry {shown_name(name)} inflates to {mebibytes:,.0f} MiB or more; each image "
                                f"may be at most {limit:,.0f} MiB.", "entry_too_large", name=shown_name(name),
                                mebibytes=mebibytes, limit=limit)


def total_too_large(size: int) -> ArchiveTooLargeError:
    megabytes, limit = size / 1e6, MAX_ZIP_TOTAL_BYTES / 1e6
    return ArchiveTooLargeError(f"The zip inflates to {megabytes:,.0f} MB or more; at most {limit:,.0f} MB can be "
                                "evaluated at once. Split it into smaller zips.", "total_too_large",
                                megabytes=megabytes, limit=limit)


def read_labels_files(archive: zipfile.ZipFile, infos: list[zipfile.ZipInfo]) -> dict[str, str]:
    """Entry name -> label from every labels.csv (its file names are relative to its folder)."""
    labels: dict[str, str] = {}
    for info in infos:
        if info.file_size > MAX_LABELS_FILE_BYTES:
            limit = MAX_LABELS_FILE_BYTES // 2**20
            raise ArchiveTooLargeError(f"{shown_name(info.filename)} is over {limit} MiB.", "labels_too_large",
                                       name=shown_name(info.filename), limit=limit)
        buffer = io.BytesIO()
        copy_limited(archive, info, buffer, MAX_LABELS_FILE_BYTES, InflateBudget())
        folder = entry_path(info.filename).parent
        for filename, label in parse_labels(buffer.getvalue(), info.filename):
            labels[str(folder / filename) if str(folder) != "." else filename] = label
    return labels


def parse_labels(data: bytes, source: str) -> list[tuple[str, str]]:
    """The (filename, label) rows of a labels.csv; a 400 naming what is wrong with it."""
    try:
        rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
    except (UnicodeDecodeError, csv.Error):
        raise ArchiveError(f"{shown_name(source)} is not a UTF-8 CSV file.", "labels_not_utf8",
                           name=shown_name(source)) from None
    if not rows or not {"filename", "label"} <= {key.strip().lower() for key in rows[0] if key}:
        raise ArchiveError(f"{shown_name(source)} needs a header row 'filename,label' and one row per image.",
                           "labels_no_header", name=shown_name(source))
    pairs = []
    for row in rows:
        values = {(key or "").strip().lower(): (value or "").strip() for key, value in row.items()}
        label = LABEL_ALIASES.get(values["label"].lower())
        if label is None:
            given, named = repr(values["label"][:30]), shown_name(values["filename"])
            raise ArchiveError(f"{shown_name(source)} has the label {given} for {named}: use {' or '.join(LABELS)}.",
                               "labels_bad_label", name=shown_name(source), label=given, filename=named)
        pairs.append((values["filename"].lstrip("./"), label))
    return pairs


def entry_path(name: str) -> PurePosixPath:
    """An entry's path, with the backslashes some Windows tools write read as folder separators."""
    return PurePosixPath(name.replace("\\", "/"))


def folder_label(name: str) -> str | None:
    """The label of the nearest enclosing folder named NORMAL or PNEUMONIA (any case), or None."""
    for folder in reversed(entry_path(name).parts[:-1]):
        if folder.upper() in LABELS:
            return folder.upper()
    return None


class InflateBudget:
    """The bytes inflated so far from one zip, refused (413) past MAX_ZIP_TOTAL_BYTES."""

    def __init__(self) -> None:
        self.used = 0

    def spend(self, size: int) -> None:
        self.used += size
        if self.used > MAX_ZIP_TOTAL_BYTES:
            raise total_too_large(self.used)


def extract_image(archive: zipfile.ZipFile, info: zipfile.ZipInfo, label: str, folder: Path,
                  budget: InflateBudget) -> ArchiveImage:
    """One image entry written into its own `folder` under its base name (the decoder's messages name it, and its
    suffix tells DICOM); a damaged entry keeps its reason."""
    folder.mkdir()
    target = folder / short_name(entry_path(info.filename).name)
    try:
        with target.open("wb") as sink:
            copy_limited(archive, info, sink, MAX_ZIP_ENTRY_BYTES, budget)
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:
        target.unlink(missing_ok=True)
        return ArchiveImage(info.filename, label, None,
                            ArchiveError(f"The zip entry is damaged ({error}).", "entry_damaged"))
    except (NotImplementedError, RuntimeError) as error:  # an unknown compression method, or encrypted
        target.unlink(missing_ok=True)
        if info.flag_bits & ENCRYPTED_FLAG:
            return ArchiveImage(info.filename, label, None, ArchiveError(
                "The zip entry is encrypted (password-protected): zip the X-rays again without a password.",
                "entry_encrypted"))
        return ArchiveImage(info.filename, label, None, ArchiveError(
            f"The zip entry is compressed in a way this app cannot read ({type(error).__name__}): zip it again with "
            "the usual (deflate) compression.", "entry_unsupported"))
    return ArchiveImage(info.filename, label, target)


def short_name(name: str, limit: int = 120) -> str:
    """A file name short enough for any file system, keeping its suffix."""
    path = PurePosixPath(name)
    if len(name.encode()) <= limit:
        return name
    return path.stem.encode()[: limit - 20].decode(errors="ignore") + path.suffix[:16]


def copy_limited(archive: zipfile.ZipFile, info: zipfile.ZipInfo, sink: BinaryIO, limit: int,
                 budget: InflateBudget) -> None:
    """Inflate an entry into `sink` chunk by chunk, refusing (413) as soon as it passes `limit` or the budget."""
    written = 0
    with archive.open(info) as entry:
        while chunk := entry.read(CHUNK_BYTES):
            written += len(chunk)
            if written > limit:
                raise entry_too_large(info.filename, written)
            budget.spend(len(chunk))
            sink.write(chunk)


def missing_labels_error(archive: LabelledArchive) -> ArchiveError:
    """Why a zip gives nothing to evaluate: what was found, and the layouts that work."""
    if archive.unlabelled:
        return ArchiveError(f"The zip holds {len(archive.unlabelled)} image(s) without a label. {LAYOUT_HELP}",
                            "unlabelled_only", unlabelled=len(archive.unlabelled))
    return ArchiveError(f"The zip holds no image. {LAYOUT_HELP}", "no_images")
