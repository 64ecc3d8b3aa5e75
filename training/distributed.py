"""Data-parallel training on several machines: who this worker is (TF_CONFIG), the strategy, sharding."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import tensorflow as tf

AutoShardPolicy = tf.data.experimental.AutoShardPolicy


def any_worker(strategy: tf.distribute.Strategy, flag: bool) -> bool:
    """Whether `flag` is set on any worker: workers must agree to stop, or the others wait at the next step."""
    votes = strategy.run(lambda: tf.constant(float(flag)))
    return bool(strategy.reduce(tf.distribute.ReduceOp.SUM, votes, axis=None) > 0)


@dataclass(frozen=True)
class Worker:
    """This process's place among the machines TF_CONFIG names; the chief (index 0) writes the run."""

    index: int
    count: int

    @property
    def is_chief(self) -> bool:
        """Whether this worker writes the run."""
        return self.index == 0


def this_worker() -> Worker:
    """Read TF_CONFIG: the "chief" task, else worker 0, is index 0; without TF_CONFIG, the only worker."""
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    chiefs = config.get("cluster", {}).get("chief", [])
    workers = config.get("cluster", {}).get("worker", [])
    if len(chiefs) + len(workers) < 2:
        return Worker(0, 1)
    task = config["task"]
    return Worker(task["index"] + (len(chiefs) if task["type"] == "worker" else 0), len(chiefs) + len(workers))


class KerasMultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
    """MultiWorkerMirroredStrategy with the reduce() Keras 3.15's fit() expects: fit() passes it its first
    (images, labels) batch as one nested value, and each scalar metric with axis=0; both raise as stock."""

    def reduce(self, reduce_op: tf.distribute.ReduceOp | str, value: object, axis: int | None) -> object:
        """Reduce each tensor of `value` over the replicas (and along `axis` unless it is a scalar)."""
        reduce_one = super().reduce

        def reduce_leaf(leaf: object) -> tf.Tensor:
            is_scalar = self.experimental_local_results(leaf)[0].shape.rank == 0
            return reduce_one(reduce_op, leaf, None if is_scalar else axis)

        return tf.nest.map_structure(reduce_leaf, value)


def distribution_strategy(worker: Worker) -> tf.distribute.Strategy:
    """Data-parallel over the TF_CONFIG workers when there are several, else over several GPUs, else the
    default strategy. Call it before any other TensorFlow op: multi-worker collectives need that."""
    if worker.count > 1:
        return KerasMultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()


def with_auto_shard(dataset: tf.data.Dataset, policy: AutoShardPolicy) -> tf.data.Dataset:
    """The dataset with how a multi-worker strategy splits it among the workers set to `policy`."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = policy
    return dataset.with_options(options)


def worker_output_dir(out: Path, worker: Worker) -> Path:
    """`out` for the chief; beside it for the other workers, whose copy must not clash on a shared disk."""
    return out if worker.is_chief else out.with_name(f"{out.name}-worker{worker.index}")
