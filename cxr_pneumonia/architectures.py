"""Model builders: our compact CNN, the seed projects' baseline and flat Keras applications.

Every builder returns a flat Functional model on a (size, size, 1) input in [0, 1] whose single
output is the pneumonia logit, so tf-keras-vis finds the conv layers in the top-level graph.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
from keras import layers

LOGIT_LAYER = "logit"
POOL_LAYER = "pool"  # the global average the logit reads


def build_cxr_cnn(image_size: int) -> keras.Model:
    """Our CNN: a VGG-style stem and separable deep stages, sized for accuracy per FLOP."""
    inputs = keras.Input((image_size, image_size, 1), name="xray")
    x = _conv_bn_relu(inputs, 24, strides=2, name="stem")
    x = _conv_stage(x, 32, separable=False, name="stage1")
    x = _conv_stage(x, 64, separable=False, name="stage2")
    x = _conv_stage(x, 128, separable=True, name="stage3")
    x = _conv_bn_relu(x, 192, separable=True, name="stage4_conv1")
    x = _conv_bn_relu(x, 192, separable=True, name="last_conv")
    x = layers.GlobalAveragePooling2D(name=POOL_LAYER)(x)
    x = layers.Dropout(0.3, name="dropout")(x)
    outputs = layers.Dense(1, name=LOGIT_LAYER)(x)
    return keras.Model(inputs, outputs, name="cxr_cnn")


def build_seed_baseline(image_size: int) -> keras.Model:
    """The seed projects' CNN: 4 x (Conv 3x3 + BatchNorm + MaxPool), Dense 512, Dropout 0.5."""
    inputs = keras.Input((image_size, image_size, 1), name="xray")
    x = inputs
    for index, filters in enumerate((32, 64, 128, 128), start=1):
        name = "last_conv" if index == 4 else f"conv{index}"
        x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=name)(x)
        x = layers.BatchNormalization(name=f"bn{index}")(x)
        x = layers.MaxPooling2D(name=f"pool{index}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(512, activation="relu", name="dense")(x)
    x = layers.Dropout(0.5, name="dropout")(x)
    outputs = layers.Dense(1, name=LOGIT_LAYER)(x)
    return keras.Model(inputs, outputs, name="seed_baseline")


def build_application(name: str, image_size: int, weights: str | None = None) -> keras.Model:
    """A Keras application (Xception, VGG16, DenseNet121) built flat through `input_tensor`."""
    constructor, scale, offset = _APPLICATIONS[name]
    inputs = keras.Input((image_size, image_size, 1), name="xray")
    rgb = layers.Concatenate(name="gray_to_rgb")([inputs, inputs, inputs])
    scaled = layers.Rescaling(scale, offset, name="application_scaling")(rgb)
    backbone = constructor(include_top=False, weights=weights, input_tensor=scaled)
    x = layers.GlobalAveragePooling2D(name=POOL_LAYER)(backbone.output)
    x = layers.Dropout(0.3, name="dropout")(x)
    outputs = layers.Dense(1, name=LOGIT_LAYER)(x)
    return keras.Model(inputs, outputs, name=name.lower())


def last_conv_layer_name(model: keras.Model) -> str:
    """Name of the last 4-D conv-like layer, the one Grad-CAM explains."""
    for layer in reversed(model.layers):
        if isinstance(layer, (layers.Conv2D, layers.SeparableConv2D, layers.DepthwiseConv2D)):
            return layer.name
        if layer.name.endswith(("_relu", "_act")) and len(layer.output.shape) == 4:
            return layer.name
    raise ValueError(f"model {model.name} has no convolutional layer")


def build_model(arch: str, image_size: int, weights: str | None = None) -> keras.Model:
    """Build the architecture named `arch` (see ARCHITECTURES)."""
    if arch == "cxr_cnn":
        return build_cxr_cnn(image_size)
    if arch == "seed_baseline":
        return build_seed_baseline(image_size)
    if arch in _APPLICATIONS:
        return build_application(arch, image_size, weights)
    raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")


def count_flops(model: keras.Model) -> int:
    """Floating-point operations for one image (2 x multiply-adds) of the conv and dense layers."""
    total_macs = 0
    for layer in model.layers:
        total_macs += _layer_macs(layer)
    return 2 * total_macs


def _layer_macs(layer: layers.Layer) -> int:
    if isinstance(layer, layers.SeparableConv2D):
        _, out_h, out_w, out_c = layer.output.shape
        in_c = layer.input.shape[-1]
        kh, kw = layer.kernel_size
        depthwise = out_h * out_w * in_c * kh * kw * layer.depth_multiplier
        return depthwise + out_h * out_w * in_c * layer.depth_multiplier * out_c
    if isinstance(layer, layers.DepthwiseConv2D):
        _, out_h, out_w, out_c = layer.output.shape
        kh, kw = layer.kernel_size
        return out_h * out_w * out_c * kh * kw
    if isinstance(layer, layers.Conv2D):
        _, out_h, out_w, out_c = layer.output.shape
        in_c = layer.input.shape[-1] // layer.groups
        kh, kw = layer.kernel_size
        return out_h * out_w * out_c * in_c * kh * kw
    if isinstance(layer, layers.Dense):
        return int(layer.input.shape[-1]) * layer.units
    return 0


def _conv_bn_relu(x, filters: int, name: str, strides: int = 1, separable: bool = False):
    conv = layers.SeparableConv2D if separable else layers.Conv2D
    x = conv(filters, 3, strides=strides, padding="same", use_bias=False, name=name)(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def _conv_stage(x, filters: int, separable: bool, name: str):
    x = _conv_bn_relu(x, filters, separable=separable, name=f"{name}_conv1")
    x = _conv_bn_relu(x, filters, separable=separable, name=f"{name}_conv2")
    return layers.MaxPooling2D(name=f"{name}_pool")(x)


_APPLICATIONS: dict[str, tuple[Callable[..., keras.Model], float, float]] = {
    # (constructor, scale, offset) mapping our [0, 1] input to what ImageNet weights expect.
    "Xception": (keras.applications.Xception, 2.0, -1.0),
    "VGG16": (keras.applications.VGG16, 255.0, -116.0),
    "DenseNet121": (keras.applications.DenseNet121, 1 / 0.226, -0.449 / 0.226),
}
ARCHITECTURES = ("cxr_cnn", "seed_baseline", *_APPLICATIONS)
