"""Example X-rays named in examples/manifest.csv (children and adults), found in a local data folder or a Hub
dataset, with the radiologists' boxes of those that have them. Manifest paths are relative to the data root:
the data set's folder first (chest_xray/test/NORMAL/x.jpeg, rsna_pneumonia/PNEUMONIA/<id>.jpg)."""

from __future__ import annotations

import csv
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from huggingface_hub import snapshot_download

from cxr_pneumonia.config import DATA_ROOT, EXAMPLES_MANIFEST
from cxr_pneumonia.explanation_quality import Box
from cxr_pneumonia.hub import HUB_ERRORS, HubSettings

BOXES_FILENAME = "boxes.csv"  # in a data set's folder: filename,x,y,width,height in pixels of the stored image
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Example:
    """One manifest row: where the image sits under the data root, who it shows, its label and why it was chosen."""

    relative_path: str
    population: str
    label: str
    note: str
    provenance: str

    @property
    def source(self) -> str:
        """The data set the image comes from: the first folder of its path."""
        return PurePosixPath(self.relative_path).parts[0]

    @property
    def kind(self) -> str:
        """Why it was chosen in one word: typical, borderline or misclassified."""
        return self.note.split(":")[0]


@dataclass(frozen=True)
class FoundExample:
    """An example whose image file was found, with the radiologists' boxes on it (none for most)."""

    path: Path
    example: Example
    boxes: tuple[Box, ...] = ()

    @property
    def caption(self) -> str:
        """The thumbnail's caption (the gallery says who): label and why it was chosen."""
        return f"{self.example.label}, {self.example.kind}"


def read_manifest(path: Path = EXAMPLES_MANIFEST) -> list[Example]:
    """The examples listed in the manifest, in order."""
    with path.open(newline="") as handle:
        return [Example(row["path"], row["population"], row["label"], row["note"], row["provenance"])
                for row in csv.DictReader(handle)]


def read_boxes(data_dir: str | Path) -> dict[str, list[Box]]:
    """A data set's radiologists' boxes by image file name, in pixels of the stored image (none without boxes.csv)."""
    path = Path(data_dir) / BOXES_FILENAME
    if not path.is_file():
        return {}
    boxes: dict[str, list[Box]] = {}
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            box = Box(float(row["x"]), float(row["y"]), float(row["width"]), float(row["height"]))
            boxes.setdefault(row["filename"], []).append(box)
    return boxes


def examples_root(settings: HubSettings, examples: list[Example]) -> Path | None:
    """A folder holding the example images: EXAMPLES_DIR (default: the data root), else the EXAMPLES_REPO
    dataset, else None."""
    local = Path(os.environ.get("EXAMPLES_DIR") or DATA_ROOT)
    if local.is_dir():
        return local
    repo = os.environ.get("EXAMPLES_REPO")
    if not repo or settings.offline:
        return None
    patterns = [example.relative_path for example in examples]
    patterns += [f"{source}/{BOXES_FILENAME}" for source in dict.fromkeys(example.source for example in examples)]
    try:
        return Path(snapshot_download(repo, repo_type="dataset", token=settings.token, endpoint=settings.endpoint,
                                      allow_patterns=patterns))
    except HUB_ERRORS as error:
        log.warning("examples dataset %s unavailable: %s", repo, error)
        return None


def available_examples(settings: HubSettings) -> list[FoundExample]:
    """The manifest's examples whose image files could be found, with their paths and boxes."""
    examples = read_manifest()
    root = examples_root(settings, examples)
    if root is None:
        return []
    boxes = {source: read_boxes(root / source) for source in dict.fromkeys(example.source for example in examples)}
    found = [(root / example.relative_path, example) for example in examples]
    return [FoundExample(path, example, tuple(boxes[example.source].get(path.name, ())))
            for path, example in found if path.is_file()]


def content_digest(data: bytes) -> str:
    """SHA-256 of a file's bytes: how an upload is recognised as one of the examples."""
    return hashlib.sha256(data).hexdigest()


def boxes_by_digest(found: list[FoundExample]) -> dict[str, tuple[Box, ...]]:
    """The boxes of the examples that have some, by their file's digest (a copy of the file is the same example)."""
    return {content_digest(item.path.read_bytes()): item.boxes for item in found if item.boxes}
