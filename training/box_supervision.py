"""Tie the map Grad-CAM explains to the radiologists' boxes while training (--box-weight).

Our networks end in global average pooling and one dense unit, so the pneumonia logit is the mean over
the last feature map's cells of that unit applied to each cell, and Grad-CAM of that map is this per-cell
logit map (the class activation map, Zhou et al. 2016). Where boxes are known, each cell's logit is also
trained against the share of the cell inside a box (zero everywhere for a normal image), as in the
patch-level supervision of Li et al. 2018 ("Thoracic disease identification and localization with limited
supervision", CVPR). Images without boxes (the children's pneumonias) train through the image label alone.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from cxr_pneumonia.architectures import LOGIT_LAYER, POOL_LAYER


def cell_size(model: keras.Model) -> int:
    """Input pixels per side of one cell of the feature map the classifier pools."""
    feature_map = _pooled_feature_map(model)
    return model.inputs[0].shape[1] // feature_map.shape[1]


def box_supervised_model(model: keras.Model) -> keras.Model:
    """The model with its per-cell logits as extra outputs: (n, 1 + cells) = [logit, cell logits...]; it shares
    every weight with `model`, which stays the one-output model that is saved."""
    cell_logits = model.get_layer(LOGIT_LAYER)(_pooled_feature_map(model))
    flat = keras.layers.Flatten(name="cell_logits")(cell_logits)
    return keras.Model(model.inputs, keras.layers.Concatenate(name="logit_and_cells")([model.outputs[0], flat]))


def box_supervised_loss(box_weight: float, label_smoothing: float = 0.0):
    """Binary cross-entropy of the image logit (its label smoothed as without boxes), plus
    `box_weight` times the mean cross-entropy of the cell logits against the cell targets, for the images whose
    targets are known. y_true is [label, targets..., known]."""

    def loss(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        label, targets, known = y_true[:, 0], y_true[:, 1:-1], y_true[:, -1]
        logit, cell_logits = y_pred[:, 0], y_pred[:, 1:]
        image_loss = keras.losses.binary_crossentropy(label[:, None], logit[:, None], from_logits=True,
                                                      label_smoothing=label_smoothing)
        cells_loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=cell_logits), axis=1)
        return image_loss + box_weight * known * cells_loss

    return loss


def _pooled_feature_map(model: keras.Model):
    try:
        pool = model.get_layer(POOL_LAYER)
    except ValueError as error:
        raise ValueError(f"box supervision needs a global-average-pooled head; {model.name} has no {POOL_LAYER!r} "
                         "layer") from error
    return pool.input
