"""Example X-rays named in examples/manifest.csv, found in a local data folder or a Hub dataset."""

from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import snapshot_download

from cxr_pneumonia.config import DEFAULT_DATA_DIR, EXAMPLES_MANIFEST
from cxr_pneumonia.hub import HUB_ERRORS, HubSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Example:
    """One manifest row: where the image sits in the data set, its label and why it was chosen."""

    relative_path: str
    label: str
    note: str
    provenance: str


def read_manifest(path: Path = EXAMPLES_MANIFEST) -> list[Example]:
    """The examples listed in the manifest, in order."""
    with path.open(newline="") as handle:
        return [Example(row["path"], row["label"], row["note"], row["provenance"]) for row in csv.DictReader(handle)]


def examples_root(settings: HubSettings, examples: list[Example]) -> Path | None:
    """A folder holding the example images: EXAMPLES_DIR, else the EXAMPLES_REPO dataset, else None."""
    local = Path(os.environ.get("EXAMPLES_DIR") or DEFAULT_DATA_DIR)
    if local.is_dir():
        return local
    repo = os.environ.get("EXAMPLES_REPO")
    if not repo or settings.offline:
        return None
    try:
        return Path(snapshot_download(repo, repo_type="dataset", token=settings.token, endpoint=settings.endpoint,
                                      allow_patterns=[example.relative_path for example in examples]))
    except HUB_ERRORS as error:
        log.warning("examples dataset %s unavailable: %s", repo, error)
        return None


def available_examples(settings: HubSettings) -> list[tuple[Path, Example]]:
    """The manifest's examples whose image files could be found, with their paths."""
    examples = read_manifest()
    root = examples_root(settings, examples)
    if root is None:
        return []
    found = [(root / example.relative_path, example) for example in examples]
    return [(path, example) for path, example in found if path.is_file()]
