#!/usr/bin/env python3
"""Train the digits MLP, quantize it to int8 and write sim/models/digits_mlp.npz.

Usage: python scripts/train_digits.py [--seed N] [--output FILE]

Run once by a developer; the demo and the tests only read the file it writes (sim/digits.py,
numpy only). Needs scikit-learn, which is not a project dependency and is not installed by this
script: without it, the script prints ``pip install scikit-learn`` and exits with status 2.

What it does (docs/digits.md has the formulas):

1. Loads scikit-learn's ``load_digits`` (1797 images, 8x8, pixels 0..16) and splits off a
   stratified held-out test set of 360 images (``train_test_split``, ``random_state=seed``).
2. Trains ``MLPClassifier`` 64 -> 64 -> 32 -> 10 (ReLU, Adam, ``random_state=seed``) on
   ``pixel / 16``; reports the float test accuracy.
3. Quantizes after training to the golden model's int8 scheme (sim/golden.py): fixed input
   quantization (sim/digits.py), int8 weights symmetric per output channel, int32 biases with the
   input zero point folded in, per-channel multiplier/shift from ``golden.quantize_multipliers``,
   output scales calibrated on the float activations of the training set, ReLU as the clamp
   ``act_min = output_zero_point``, int8 logits (no ReLU) from the last layer.
4. Runs the quantized model on the test set with ``golden.dense`` (prediction = argmax of the
   int8 logits), reports that accuracy, and saves everything, with the quantized test set, to
   the output file (format: sim/digits.py's docstring).
"""

import argparse
import importlib
import sys
from pathlib import Path

import numpy as np

from tessera.sim import digits, golden

DEFAULT_OUTPUT = digits.DEFAULT_MODEL_PATH
DEFAULT_SEED = 0
TEST_IMAGES = 360
HIDDEN_LAYERS = (64, 32)
MAX_FILE_BYTES = 200 * 1024


def _require_sklearn():
    """Exit with status 2 and the install command if scikit-learn cannot be imported."""
    try:
        importlib.import_module("sklearn")
    except ImportError:
        print("scikit-learn is needed to train the digits model (it is not a project dependency):\n"
              "    pip install scikit-learn", file=sys.stderr)
        sys.exit(2)


def train(seed):
    """Split ``load_digits`` and train the float MLP. Returns (classifier, split arrays)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier

    data = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        data.data, data.target, test_size=TEST_IMAGES, stratify=data.target, random_state=seed)
    classifier = MLPClassifier(hidden_layer_sizes=HIDDEN_LAYERS, activation="relu",
                               solver="adam", alpha=1e-3, max_iter=2000, random_state=seed)
    classifier.fit(x_train / digits.PIXEL_MAX, y_train)
    return classifier, (x_train, x_test, y_train, y_test)


def float_activations(weights, biases, x):
    """Float forward pass: the output of every layer (ReLU after all but the last)."""
    outputs = []
    for i, (w, b) in enumerate(zip(weights, biases)):
        x = x @ w + b
        if i < len(weights) - 1:
            x = np.maximum(x, 0.0)
        outputs.append(x)
    return outputs


def output_quantization(activations, relu):
    """(scale, zero point) covering the calibration range of one layer's float outputs.

    ReLU layers: the range [0, max] onto the 256 codes -128..127 (zero point -128). The logits
    layer: [min(lo, 0), max(hi, 0)] onto -128..127, zero point rounded and clamped to int8.
    """
    lo = 0.0 if relu else min(float(activations.min()), 0.0)
    hi = max(float(activations.max()), 0.0)
    if hi - lo <= 0.0:
        raise ValueError(f"calibration range of a layer must not be empty, not [{lo}, {hi}]")
    scale = (hi - lo) / 255.0
    zero_point = golden.INT8_MIN if relu else int(np.clip(np.rint(-128 - lo / scale), -128, 127))
    return scale, zero_point


def quantize_layer(w, b, input_scale, input_zero_point, output_scale, output_zero_point, relu):
    """Quantize one float layer ``y = x @ w + b`` (w (K, N)); returns a dict of npz arrays."""
    weight_scale = np.abs(w).max(axis=0) / 127.0
    weight_scale = np.where(weight_scale > 0.0, weight_scale, 1.0)  # an all-zero column
    w_q = np.clip(np.rint(w / weight_scale), -127, 127).astype(np.int8)
    bias = np.rint(b / (input_scale * weight_scale)).astype(np.int64)
    bias -= input_zero_point * w_q.astype(np.int64).sum(axis=0)   # fold the input zero point
    if np.any((bias < golden.INT32_MIN) | (bias > golden.INT32_MAX)):
        raise ValueError(f"quantized bias must fit int32, not {bias.min()}..{bias.max()}")
    multiplier, shift = golden.quantize_multipliers(input_scale * weight_scale / output_scale)
    return {
        "weights": w_q,
        "bias": bias.astype(np.int32),
        "multiplier": multiplier,
        "shift": shift,
        "output_zero_point": np.int64(output_zero_point),
        "act_min": np.int64(output_zero_point if relu else golden.INT8_MIN),
        "act_max": np.int64(golden.INT8_MAX),
        "weight_scale": weight_scale.astype(np.float64),
        "output_scale": np.float64(output_scale),
    }


def quantize(classifier, x_calibration):
    """Post-training quantization of the classifier's layers; returns their npz dicts."""
    weights, biases = classifier.coefs_, classifier.intercepts_
    calibration = float_activations(weights, biases, x_calibration)
    layers = []
    scale, zero_point = digits.INPUT_SCALE, digits.INPUT_ZERO_POINT
    for i, (w, b, act) in enumerate(zip(weights, biases, calibration)):
        relu = i < len(weights) - 1
        out_scale, out_zero_point = output_quantization(act, relu)
        layers.append(quantize_layer(w, b, scale, zero_point, out_scale, out_zero_point, relu))
        scale, zero_point = out_scale, out_zero_point
    return layers


def int8_logits(layers, x):
    """int8 logits of int8 inputs ``x``: ``golden.dense`` applied layer after layer."""
    for q in layers:
        x = golden.dense(x, q["weights"], q["bias"], q["multiplier"], q["shift"],
                         q["output_zero_point"], q["act_min"], q["act_max"])
    return x


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED,
                        help=f"random_state of the split and of training (default {DEFAULT_SEED})")
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_OUTPUT,
                        help="model file to write (default: the committed sim/models file)")
    args = parser.parse_args()
    _require_sklearn()

    print(f"seed={args.seed}")
    classifier, (x_train, x_test, y_train, y_test) = train(args.seed)
    print(f"trained MLP 64 -> {' -> '.join(map(str, HIDDEN_LAYERS))} -> 10 on {len(y_train)} "
          f"images ({classifier.n_iter_} epochs); {len(y_test)} held out")

    float_logits = float_activations(classifier.coefs_, classifier.intercepts_,
                                     x_test / digits.PIXEL_MAX)[-1]
    float_accuracy = float(np.mean(np.argmax(float_logits, axis=1) == y_test))
    sklearn_accuracy = classifier.score(x_test / digits.PIXEL_MAX, y_test)
    if float_accuracy != sklearn_accuracy:
        raise RuntimeError(f"float forward pass disagrees with scikit-learn: "
                           f"{float_accuracy} != {sklearn_accuracy}")

    layers = quantize(classifier, x_train / digits.PIXEL_MAX)
    test_images = digits.quantize_images(x_test)
    int8_accuracy = float(np.mean(digits.predict(int8_logits(layers, test_images)) == y_test))
    train_int8 = float(np.mean(
        digits.predict(int8_logits(layers, digits.quantize_images(x_train))) == y_train))

    arrays = {"num_layers": np.int64(len(layers))}
    for i, q in enumerate(layers):
        arrays.update({f"layer{i}_{key}": value for key, value in q.items()})
        shift = q["shift"]
        print(f"layer {i}: {q['weights'].shape[0]} -> {q['weights'].shape[1]}, "
              f"output scale {q['output_scale']:.6g}, zero point {int(q['output_zero_point'])}, "
              f"act [{int(q['act_min'])}, {int(q['act_max'])}], shift {shift.min()}..{shift.max()}")
    arrays.update(
        input_scale=np.float64(digits.INPUT_SCALE),
        input_zero_point=np.int64(digits.INPUT_ZERO_POINT),
        test_images=test_images,
        test_labels=y_test.astype(np.int64),
        float_accuracy=np.float64(float_accuracy),
        int8_accuracy=np.float64(int8_accuracy),
        seed=np.int64(args.seed),
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.output, **arrays)
    size = args.output.stat().st_size
    print(f"float accuracy (test, {len(y_test)} images): {float_accuracy:.4f}")
    print(f"int8 accuracy (test, golden model):        {int8_accuracy:.4f}")
    print(f"int8 accuracy (training set):              {train_int8:.4f}")
    print(f"wrote {args.output} ({size} bytes)")
    if size > MAX_FILE_BYTES:
        print(f"error: the model file must be at most {MAX_FILE_BYTES} bytes, not {size}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
