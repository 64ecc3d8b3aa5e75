"""The one way checks write their result into a model directory's metrics.json."""

from __future__ import annotations

import json
from pathlib import Path

from cxr_pneumonia.config import METRICS_FILENAME


def store_in_metrics(model_dir: Path, key: str, value: object) -> None:
    """Put `value` under `key` in the model directory's metrics.json (created if missing)."""
    path = Path(model_dir) / METRICS_FILENAME
    metrics = json.loads(path.read_text()) if path.is_file() else {}
    metrics[key] = value
    path.write_text(json.dumps(metrics, indent=2))
