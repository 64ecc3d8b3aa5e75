"""Data-parallel training on two worker processes that talk gRPC over 127.0.0.1, as on two machines."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import keras
import numpy as np
import pytest

from cxr_pneumonia.architectures import build_model
from cxr_pneumonia.config import MODEL_FILENAME

REPO_ROOT = Path(__file__).resolve().parent.parent
SEED = 7
IMAGE_SIZE = 32
TIMEOUT_SECONDS = 300  # a worker whose peer died waits for it until killed


def free_ports(count: int) -> list[int]:
    """Ports on 127.0.0.1 that are free now (the workers bind them a moment later)."""
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def train_on_two_workers(data_dir: Path, out: Path, args_of_worker: tuple[list[str], list[str]]) -> None:
    """Run `python -m training.train` as workers 0 and 1 of one TF_CONFIG cluster and check both succeed."""
    hosts = [f"127.0.0.1:{port}" for port in free_ports(2)]
    command = [sys.executable, "-m", "training.train", "--data", str(data_dir), "--out", str(out),
               "--arch", "cxr_cnn", "--image-size", str(IMAGE_SIZE), "--batch-size", "4", "--val-fraction", "0.3",
               "--seed", str(SEED), "--skip-report"]
    logs = [tempfile.TemporaryFile("w+") for _ in args_of_worker]  # files: a full pipe would stall a worker
    workers = []
    for index, worker_args in enumerate(args_of_worker):
        tf_config = {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}}
        env = {**os.environ, "TF_CONFIG": json.dumps(tf_config), "CUDA_VISIBLE_DEVICES": "-1",
               "TF_CPP_MIN_LOG_LEVEL": "2"}
        workers.append(subprocess.Popen([*command, *worker_args], cwd=REPO_ROOT, env=env, text=True,
                                        stdout=logs[index], stderr=subprocess.STDOUT))
    try:
        with contextlib.suppress(subprocess.TimeoutExpired):  # a hung worker is killed, then reported below
            for worker in workers:
                worker.wait(timeout=TIMEOUT_SECONDS)
    finally:
        for worker in workers:
            worker.kill()
            worker.wait()
    for index, (worker, log) in enumerate(zip(workers, logs, strict=True)):
        log.seek(0)
        assert worker.returncode == 0, f"worker {index} exited with {worker.returncode}:\n{log.read()[-5000:]}"
        log.close()


def saved_weights(model_dir: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The trainable and the other (BatchNorm moving statistics) weights of a run's model."""
    model = keras.models.load_model(model_dir / MODEL_FILENAME, compile=False, safe_mode=True)
    return [v.numpy() for v in model.trainable_weights], [v.numpy() for v in model.non_trainable_weights]


@pytest.fixture(scope="module")
def cluster_run(mini_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder holding one two-worker run, whose chief runs out of time after the first of 2 epochs."""
    root = tmp_path_factory.mktemp("cluster")
    chief_args = ["--epochs", "2", "--time-budget-minutes", "1e-6"]
    other_args = ["--epochs", "2", "--time-budget-minutes", "60"]
    train_on_two_workers(mini_data_dir, root / "run", (chief_args, other_args))
    return root


def test_only_the_chief_writes_into_out_and_records_the_cluster(cluster_run):
    assert {path.name for path in cluster_run.iterdir()} == {"run", "run-worker1"}
    assert {path.name for path in (cluster_run / "run").iterdir()} == {MODEL_FILENAME, "history.csv", "run.json",
                                                                        "split.json"}
    run = json.loads((cluster_run / "run" / "run.json").read_text())
    assert (run["workers"], run["batch_size"], run["global_batch_size"]) == (2, 4, 8)
    assert len((cluster_run / "run" / "history.csv").read_text().strip().splitlines()) == 2  # header + 1 epoch


def test_workers_stop_together_when_one_runs_out_of_time(cluster_run):
    for run_dir in (cluster_run / "run", cluster_run / "run-worker1"):
        assert json.loads((run_dir / "run.json").read_text())["epochs_run"] == 1


def test_both_workers_hold_the_same_trained_weights(cluster_run):
    chief, chief_statistics = saved_weights(cluster_run / "run")
    other, other_statistics = saved_weights(cluster_run / "run-worker1")
    # BatchNorm's moving statistics follow each worker's own batches, so they show the batches differed;
    # then equal trained weights mean every step applied the gradients of both workers.
    assert not all(map(np.array_equal, chief_statistics, other_statistics))
    for chief_array, other_array in zip(chief, other, strict=True):
        np.testing.assert_array_equal(chief_array, other_array)
    keras.utils.set_random_seed(SEED)
    initial = [variable.numpy() for variable in build_model("cxr_cnn", IMAGE_SIZE).trainable_weights]
    assert all(not np.array_equal(trained, start) for trained, start in zip(chief, initial, strict=True))
    moved = np.sqrt(sum(np.sum((trained - start) ** 2) for trained, start in zip(chief, initial, strict=True)))
    assert moved < 0.5 * np.sqrt(sum(np.sum(start**2) for start in initial))  # a few steps from the same start
