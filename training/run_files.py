"""The files a training run writes beside its model.keras, named once for training.train, which writes them, and for
the steps that read them afterwards (training.report, training.gate, training.loso)."""

from __future__ import annotations

import json
from pathlib import Path

RUN_FILENAME = "run.json"  # the run's settings and outcome: sources, image size, epochs, best validation AUC...
HISTORY_FILENAME = "history.csv"  # one row per epoch (keras.callbacks.CSVLogger)
SPLIT_FILENAME = "split.json"  # the patient-grouped validation images, by path


def read_run(run_dir: str | Path) -> dict:
    """The run's run.json, or an empty dict for a model directory without one."""
    path = Path(run_dir) / RUN_FILENAME
    return json.loads(path.read_text()) if path.is_file() else {}
