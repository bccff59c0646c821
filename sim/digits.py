"""The committed int8 handwritten-digits MLP: loading it and running it on the golden model.

``sim/models/digits_mlp.npz`` holds a small multilayer perceptron (64 -> 64 -> 32 -> 10, ReLU)
trained on scikit-learn's ``load_digits`` (8x8 images, pixel values 0..16) and quantized after
training to the golden model's int8 scheme by ``scripts/train_digits.py`` (docs/digits.md has the
formulas and the measured accuracies). This module needs numpy only: scikit-learn is used once, by
that script, never here.

Input quantization is fixed, not calibrated: a pixel ``p`` in 0..16 stands for the real value
``p / 16``; with ``INPUT_SCALE = 1/240`` and ``INPUT_ZERO_POINT = -128`` its int8 code is::

    q = round(p / 16 / INPUT_SCALE) + INPUT_ZERO_POINT = 15 * p - 128      (0 -> -128, 16 -> 112)

which is exact: ``(q - INPUT_ZERO_POINT) * INPUT_SCALE == p / 16`` for every pixel value.

A model file is an ``.npz`` archive (no pickled objects) with these arrays:

=====================================  ===========================================================
key                                    content
=====================================  ===========================================================
``num_layers``                         int: number of dense layers L
``layer{i}_weights``                   int8 (K, N), symmetric per output channel
``layer{i}_bias``                      int32 (N,), input zero point folded in
``layer{i}_multiplier``                int32 (N,), Q31 requantization multipliers
``layer{i}_shift``                     int32 (N,), TFLite sign convention (positive = left)
``layer{i}_output_zero_point``         int
``layer{i}_act_min``, ``_act_max``     int: the output clamp (ReLU: act_min = output zero point)
``layer{i}_weight_scale``              float64 (N,): real weight = scale * code (informative)
``layer{i}_output_scale``              float64: real output = scale * (code - zero point)
``input_scale``, ``input_zero_point``  float64 / int: must equal the constants of this module
``test_images``                        int8 (n, 64): the held-out images, already quantized
``test_labels``                        int (n,): their digits 0..9
``float_accuracy``, ``int8_accuracy``  float64: test accuracy of the float model and of the int8
                                       model (golden model, argmax of the int8 logits)
``seed``                               int: the random_state of the training run
=====================================  ===========================================================
"""

import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .layers import Dense

__all__ = [
    "DEFAULT_MODEL_PATH",
    "IMAGE_PIXELS",
    "NUM_CLASSES",
    "PIXEL_MAX",
    "INPUT_SCALE",
    "INPUT_ZERO_POINT",
    "DigitsModelError",
    "DigitsModel",
    "load_model",
    "quantize_images",
    "predict",
]

DEFAULT_MODEL_PATH = Path(__file__).resolve().parent / "models" / "digits_mlp.npz"
IMAGE_PIXELS = 64          # 8 x 8
NUM_CLASSES = 10
PIXEL_MAX = 16             # load_digits pixels are integers 0..16
INPUT_SCALE = 1 / 240      # real input = pixel / 16 = INPUT_SCALE * (q - INPUT_ZERO_POINT)
INPUT_ZERO_POINT = -128
_PIXEL_STEP = 15           # q = _PIXEL_STEP * pixel + INPUT_ZERO_POINT (= 1 / (16 * INPUT_SCALE))

_RETRAIN_HINT = "pip install scikit-learn && python scripts/train_digits.py"


class DigitsModelError(ValueError):
    """A digits model file exists but is not a valid model (unreadable, missing or bad arrays)."""


def quantize_images(pixels):
    """Quantize raw ``load_digits`` pixels (integers 0..16) to int8 inputs: ``q = 15 * p - 128``.

    ``pixels``: an integer array, or a float array holding whole numbers (as ``load_digits``
    returns them), of shape (n, 64) or (n, 8, 8). Returns int8 (n, 64). Pixel 0 becomes -128 and
    pixel 16 becomes 112; the mapping is exact (see the module docstring). Raises ``TypeError``
    for a non-numeric array and ``ValueError`` naming the first bad value or the bad shape.
    """
    arr = np.asarray(pixels)
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"pixels must be an integer or float array, not dtype {arr.dtype}")
    if arr.ndim == 3 and arr.shape[1:] == (8, 8):
        arr = arr.reshape(arr.shape[0], IMAGE_PIXELS)
    if arr.ndim != 2 or arr.shape[1] != IMAGE_PIXELS:
        raise ValueError(f"pixels must have shape (n, 64) or (n, 8, 8), not {arr.shape}")
    if arr.size:
        bad = ~np.isfinite(arr) | (arr < 0) | (arr > PIXEL_MAX) | (arr != np.floor(arr))
        if np.any(bad):
            raise ValueError(
                f"pixels must be whole numbers in [0, {PIXEL_MAX}], not {arr[bad][0].item()!r}"
            )
    return (arr.astype(np.int64) * _PIXEL_STEP + INPUT_ZERO_POINT).astype(np.int8)


def predict(logits):
    """Predicted digit of each row of int8 logits (n, 10): the index of the largest logit.

    Ties go to the lowest digit (``np.argmax``). Returns int64 (n,). Raises ``TypeError`` for a
    non-int8 array and ``ValueError`` for a shape other than (n, 10).
    """
    if not isinstance(logits, np.ndarray) or logits.dtype != np.int8:
        shown = logits.dtype if isinstance(logits, np.ndarray) else type(logits).__name__
        raise TypeError(f"logits must be an int8 numpy array, not {shown}")
    if logits.ndim != 2 or logits.shape[1] != NUM_CLASSES:
        raise ValueError(f"logits must have shape (n, {NUM_CLASSES}), not {logits.shape}")
    return np.argmax(logits, axis=1)


@dataclass(frozen=True, eq=False)
class DigitsModel:
    """A loaded digits model: its dense layers, held-out test set and recorded accuracies."""
    layers: list                      # of tessera.sim.layers.Dense, input first
    test_images: np.ndarray           # int8 (n, 64)
    test_labels: np.ndarray           # int64 (n,), digits 0..9
    input_scale: float
    input_zero_point: int
    float_accuracy: float             # as measured by scripts/train_digits.py
    int8_accuracy: float              # as measured by scripts/train_digits.py
    path: Path = field(default=DEFAULT_MODEL_PATH)

    def quantize_images(self, pixels):
        """Raw 0..16 pixels -> int8 (n, 64) model inputs; see the module function."""
        return quantize_images(pixels)

    def reference_logits(self, x):
        """int8 logits (n, 10) of int8 inputs ``x`` (n, 64): ``golden.dense`` layer by layer."""
        if not isinstance(x, np.ndarray) or x.dtype != np.int8:
            shown = x.dtype if isinstance(x, np.ndarray) else type(x).__name__
            raise TypeError(f"x must be an int8 numpy array, not {shown}")
        if x.ndim != 2 or x.shape[1] != IMAGE_PIXELS:
            raise ValueError(f"x must have shape (n, {IMAGE_PIXELS}), not {x.shape}")
        for layer in self.layers:
            x = layer.reference(x)
        return x

    def predict(self, logits):
        """Predicted digits (n,) of int8 logits (n, 10); see the module function."""
        return predict(logits)


def _get(archive, path, key):
    if key not in archive.files:
        raise DigitsModelError(f"{path} is not a digits model: array {key!r} is missing")
    return archive[key]


def _array(archive, path, key, dtype, shape):
    """Array ``key`` with exactly ``dtype`` and ``shape`` (None = any length on that axis)."""
    a = _get(archive, path, key)
    if a.dtype != dtype:
        raise DigitsModelError(f"{path}: {key} must have dtype {np.dtype(dtype)}, not {a.dtype}")
    if a.ndim != len(shape) or any(s is not None and s != t for s, t in zip(shape, a.shape)):
        want = "(" + ", ".join("n" if s is None else str(s) for s in shape) + ")"
        raise DigitsModelError(f"{path}: {key} must have shape {want}, not {a.shape}")
    return a


def _int(archive, path, key):
    a = _get(archive, path, key)
    if a.ndim != 0 or a.dtype.kind not in "iu":
        raise DigitsModelError(f"{path}: {key} must be an integer scalar, not {a.dtype} {a.shape}")
    return int(a)


def _float(archive, path, key):
    a = _get(archive, path, key)
    if a.ndim != 0 or a.dtype.kind != "f" or not np.isfinite(a):
        raise DigitsModelError(f"{path}: {key} must be a finite float scalar, not {a!r}")
    return float(a)


def _layers(archive, path):
    num_layers = _int(archive, path, "num_layers")
    if num_layers < 1:
        raise DigitsModelError(f"{path}: num_layers must be >= 1, not {num_layers}")
    layers = []
    k = IMAGE_PIXELS
    for i in range(num_layers):
        p = f"layer{i}_"
        w = _array(archive, path, p + "weights", np.int8, (k, None))
        n = w.shape[1]
        params = {name: _array(archive, path, p + name, np.int32, (n,))
                  for name in ("bias", "multiplier", "shift")}
        clamp = {name: _int(archive, path, p + name)
                 for name in ("output_zero_point", "act_min", "act_max")}
        try:
            layers.append(Dense(w, params["bias"], params["multiplier"], params["shift"], **clamp))
        except (TypeError, ValueError) as exc:
            raise DigitsModelError(f"{path}: layer {i} is not a valid Dense layer: {exc}") from exc
        k = n
    if k != NUM_CLASSES:
        raise DigitsModelError(f"{path}: the last layer must have {NUM_CLASSES} outputs, not {k}")
    return layers


def load_model(path=DEFAULT_MODEL_PATH):
    """Load a digits model file (default: the committed ``sim/models/digits_mlp.npz``).

    Every array is checked (dtype, shape, value range; the layer chain 64 -> ... -> 10; the input
    quantization equal to this module's constants). Raises ``FileNotFoundError`` if the file does
    not exist and :class:`DigitsModelError` (a ``ValueError``) naming the file and the bad array
    if it is unreadable or invalid.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"digits model file {str(path)!r} does not exist (regenerate it: {_RETRAIN_HINT})"
        )
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DigitsModelError(f"{path} is not a readable .npz archive: {exc}") from exc
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DigitsModelError(f"{path} is a single .npy array, not an .npz model archive")
    with archive:
        try:
            return _load(archive, path)
        except DigitsModelError:
            raise
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
            raise DigitsModelError(f"{path} has a corrupt array: {exc}") from exc


def _load(archive, path):
    layers = _layers(archive, path)
    images = _array(archive, path, "test_images", np.int8, (None, IMAGE_PIXELS))
    labels = _get(archive, path, "test_labels")
    if labels.dtype.kind not in "iu" or labels.shape != (images.shape[0],):
        raise DigitsModelError(
            f"{path}: test_labels must be integers of shape ({images.shape[0]},), "
            f"not {labels.dtype} {labels.shape}"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        bad = labels[(labels < 0) | (labels >= NUM_CLASSES)][0]
        raise DigitsModelError(f"{path}: test_labels must be digits 0..9, not {int(bad)}")
    input_scale = _float(archive, path, "input_scale")
    input_zero_point = _int(archive, path, "input_zero_point")
    if (input_scale, input_zero_point) != (INPUT_SCALE, INPUT_ZERO_POINT):
        raise DigitsModelError(
            f"{path}: input quantization must be scale {INPUT_SCALE!r}, zero point "
            f"{INPUT_ZERO_POINT}, not scale {input_scale!r}, zero point {input_zero_point}"
        )
    accuracies = {}
    for key in ("float_accuracy", "int8_accuracy"):
        accuracies[key] = _float(archive, path, key)
        if not 0.0 <= accuracies[key] <= 1.0:
            raise DigitsModelError(f"{path}: {key} must be in [0, 1], not {accuracies[key]!r}")
    return DigitsModel(
        layers=layers,
        test_images=images,
        test_labels=labels.astype(np.int64),
        input_scale=input_scale,
        input_zero_point=input_zero_point,
        path=path,
        **accuracies,
    )
