"""Training batches draw every (source, class) group equally often, whatever the groups' sizes."""

import numpy as np
import tensorflow as tf

from training.data import LabelledImages, balance_groups, sample_equally


def test_groups_are_one_per_source_and_class():
    images = LabelledImages(["a/1", "a/2", "a/3", "b/1", "b/2"], np.array([0, 1, 1, 0, 1], np.int32),
                            ["kids", "kids", "kids", "adults", "adults"])
    groups = balance_groups(images)
    assert [(g.sources[0], int(g.labels[0]), len(g)) for g in groups] == [
        ("kids", 0, 1), ("kids", 1, 2), ("adults", 0, 1), ("adults", 1, 1)]
    assert all(len(set(g.sources)) == 1 and len(set(g.labels.tolist())) == 1 for g in groups)


def test_unequal_groups_are_drawn_equally_often():
    sizes = [5, 200, 40, 1000]  # as unequal as normals and pneumonias across two hospitals
    groups = [tf.data.Dataset.from_tensor_slices(np.full(size, index)) for index, size in enumerate(sizes)]
    drawn = np.array(list(sample_equally(groups, seed=3).take(8000).as_numpy_iterator()))
    shares = np.bincount(drawn, minlength=4) / len(drawn)
    assert np.all(np.abs(shares - 0.25) < 0.02), shares
