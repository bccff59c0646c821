"""Tests of the committed digits model (sim/models/digits_mlp.npz) and its loader (sim/digits.py).

The recorded int8 accuracy is recomputed from the committed test set through the golden model;
the input quantization, prediction and every loader error are checked directly. Retraining
(scripts/train_digits.py) is checked for reproducibility only in the slow regression, and only
where scikit-learn is installed.
"""

import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from tessera.sim import digits, golden
from tessera.sim.digits import DigitsModelError, load_model, predict, quantize_images

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "train_digits.py"


@pytest.fixture(scope="module")
def model():
    return load_model()


@pytest.fixture(scope="module")
def arrays():
    """The committed file's arrays, for building broken copies."""
    with np.load(digits.DEFAULT_MODEL_PATH) as archive:
        return {key: archive[key] for key in archive.files}


def _write(tmp_path, arrays, **changes):
    """Save ``arrays`` with ``changes`` applied (a value of None deletes the key)."""
    data = dict(arrays)
    for key, value in changes.items():
        if value is None:
            del data[key]
        else:
            data[key] = value
    path = tmp_path / "model.npz"
    np.savez(path, **data)
    return path


# --- the committed model ----------------------------------------------------------------------

def test_committed_file_is_under_200_kb():
    assert digits.DEFAULT_MODEL_PATH.stat().st_size < 200 * 1024


def test_model_shapes_and_dtypes(model):
    shapes = [layer.weights.shape for layer in model.layers]
    assert shapes == [(64, 64), (64, 32), (32, 10)]
    for layer in model.layers:
        n = layer.weights.shape[1]
        assert layer.weights.dtype == np.int8
        for name in ("bias", "multiplier", "shift"):
            value = np.asarray(getattr(layer, name))
            assert value.dtype == np.int32 and value.shape == (n,), name
        assert np.all(np.asarray(layer.multiplier) >= 2**30)     # normalized Q31, none zero
    n = model.test_images.shape[0]
    assert model.test_images.dtype == np.int8 and model.test_images.shape == (n, 64)
    assert 300 <= n <= 400
    assert model.test_labels.shape == (n,)
    assert set(np.unique(model.test_labels)) == set(range(10))
    assert model.input_scale == digits.INPUT_SCALE == 1 / 240
    assert model.input_zero_point == digits.INPUT_ZERO_POINT == -128


def test_weights_are_symmetric_int8(model):
    for layer in model.layers:
        assert layer.weights.min() >= -127            # symmetric: -128 is never used
        assert np.all(np.abs(layer.weights).max(axis=0) == 127)   # per-channel full scale


def test_hidden_layers_are_relu_and_the_last_gives_int8_logits(model):
    *hidden, last = model.layers
    for layer in hidden:
        assert layer.output_zero_point == -128
        assert (layer.act_min, layer.act_max) == (layer.output_zero_point, 127)
    assert (last.act_min, last.act_max) == (-128, 127)


def test_committed_test_images_are_quantized_pixels(model):
    q = model.test_images.astype(np.int64)
    assert np.all((q - digits.INPUT_ZERO_POINT) % 15 == 0)
    assert q.min() == -128 and q.max() == 112
    pixels = (q - digits.INPUT_ZERO_POINT) // 15
    assert np.array_equal(quantize_images(pixels), model.test_images)


def test_int8_accuracy_recomputed_equals_stored(model):
    predicted = model.predict(model.reference_logits(model.test_images))
    accuracy = float(np.mean(predicted == model.test_labels))
    print(f"int8 accuracy {accuracy:.4f}, float accuracy {model.float_accuracy:.4f}")
    assert accuracy == model.int8_accuracy
    assert accuracy >= 0.90


def test_float_accuracy_is_within_three_points_of_int8(model):
    assert model.float_accuracy >= 0.90
    assert abs(model.float_accuracy - model.int8_accuracy) <= 0.03


def test_reference_logits_chain_golden_dense(model):
    x = model.test_images
    for layer in model.layers:
        x = golden.dense(x, layer.weights, layer.bias, layer.multiplier, layer.shift,
                         layer.output_zero_point, layer.act_min, layer.act_max)
    logits = model.reference_logits(model.test_images)
    assert logits.dtype == np.int8 and logits.shape == (model.test_images.shape[0], 10)
    assert np.array_equal(logits, x)


def test_logits_of_one_image_do_not_depend_on_the_batch(model, seed):
    rng = np.random.default_rng(seed)
    batch = model.reference_logits(model.test_images)
    for i in rng.choice(model.test_images.shape[0], size=5, replace=False):
        assert np.array_equal(model.reference_logits(model.test_images[i:i + 1]), batch[i:i + 1])


# --- input quantization and prediction ----------------------------------------------------------

def test_quantize_images_maps_0_and_16_as_documented():
    q = quantize_images(np.array([[0] * 32 + [16] * 32]))
    assert q.dtype == np.int8
    assert np.all(q[0, :32] == -128) and np.all(q[0, 32:] == 112)


def test_quantize_images_is_exact_for_every_pixel_value():
    pixels = np.arange(17).repeat(4)[:64].reshape(1, 64)
    q = quantize_images(pixels).astype(np.int64)
    assert np.array_equal(q, 15 * pixels - 128)
    scale = Fraction(1, 240)
    for p, code in zip(pixels[0], q[0]):
        assert (code - digits.INPUT_ZERO_POINT) * scale == Fraction(int(p), 16)   # exact
        assert round(int(p) / 16 / digits.INPUT_SCALE) + digits.INPUT_ZERO_POINT == code


def test_quantize_images_accepts_ints_floats_and_8x8(seed):
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 17, size=(7, 64))
    q = quantize_images(pixels)
    assert q.shape == (7, 64)
    assert np.array_equal(q.astype(np.int64), 15 * pixels - 128)
    assert np.array_equal(quantize_images(pixels.astype(np.float64)), q)
    assert np.array_equal(quantize_images(pixels.astype(np.uint8).reshape(7, 8, 8)), q)
    assert quantize_images(np.zeros((0, 64))).shape == (0, 64)


@pytest.mark.parametrize("bad, text", [(17, "17"), (-1, "-1"), (2.5, "2.5"), (np.nan, "nan")])
def test_quantize_images_rejects_bad_pixels(bad, text):
    pixels = np.zeros((2, 64))
    pixels[1, 5] = bad
    message = f"pixels must be whole numbers in \\[0, 16\\], not {text}"
    with pytest.raises(ValueError, match=message):
        quantize_images(pixels)


@pytest.mark.parametrize("shape", [(64,), (2, 63), (2, 8, 7), (1, 1, 64)])
def test_quantize_images_rejects_bad_shapes(shape):
    with pytest.raises(ValueError, match=r"pixels must have shape \(n, 64\) or \(n, 8, 8\)"):
        quantize_images(np.zeros(shape))


def test_quantize_images_rejects_non_numbers():
    with pytest.raises(TypeError, match="pixels must be an integer or float array"):
        quantize_images(np.full((1, 64), "1"))


def test_predict_is_argmax_with_ties_to_the_lowest_digit(seed):
    rng = np.random.default_rng(seed)
    logits = rng.integers(-128, 128, size=(50, 10)).astype(np.int8)
    assert np.array_equal(predict(logits), np.argmax(logits.astype(np.int64), axis=1))
    tie = np.full((1, 10), -5, dtype=np.int8)
    tie[0, [3, 7]] = 100
    assert predict(tie).tolist() == [3]


def test_predict_rejects_bad_logits():
    with pytest.raises(TypeError, match="logits must be an int8 numpy array, not int32"):
        predict(np.zeros((2, 10), dtype=np.int32))
    with pytest.raises(ValueError, match=r"logits must have shape \(n, 10\), not \(2, 9\)"):
        predict(np.zeros((2, 9), dtype=np.int8))


def test_reference_logits_rejects_bad_input(model):
    with pytest.raises(TypeError, match="x must be an int8 numpy array, not float64"):
        model.reference_logits(np.zeros((1, 64)))
    with pytest.raises(ValueError, match=r"x must have shape \(n, 64\), not \(1, 8, 8\)"):
        model.reference_logits(np.zeros((1, 8, 8), dtype=np.int8))


# --- loader errors -----------------------------------------------------------------------------

def test_missing_file_names_the_file_and_the_fix(tmp_path):
    path = tmp_path / "absent.npz"
    with pytest.raises(FileNotFoundError, match="absent.npz.*python scripts/train_digits.py"):
        load_model(path)


def test_garbage_file_is_refused(tmp_path):
    path = tmp_path / "garbage.npz"
    path.write_bytes(b"this is not a zip archive\n" * 10)
    with pytest.raises(DigitsModelError, match="garbage.npz is not a readable .npz archive"):
        load_model(path)


def test_truncated_file_is_refused(tmp_path):
    data = digits.DEFAULT_MODEL_PATH.read_bytes()
    path = tmp_path / "truncated.npz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DigitsModelError, match="truncated.npz"):
        load_model(path)


def test_npy_file_is_refused(tmp_path):
    path = tmp_path / "single.npy"
    np.save(path, np.zeros(3))
    with pytest.raises(DigitsModelError, match="single .npy array, not an .npz"):
        load_model(path)


def test_saved_unchanged_copy_loads(tmp_path, arrays, model):
    copy = load_model(_write(tmp_path, arrays))
    assert copy.int8_accuracy == model.int8_accuracy
    assert np.array_equal(copy.test_images, model.test_images)


@pytest.mark.parametrize("key", ["layer1_bias", "test_labels", "num_layers", "int8_accuracy"])
def test_missing_array_is_named(tmp_path, arrays, key):
    with pytest.raises(DigitsModelError, match=f"array '{key}' is missing"):
        load_model(_write(tmp_path, arrays, **{key: None}))


def test_wrong_dtype_is_named(tmp_path, arrays):
    path = _write(tmp_path, arrays, layer0_weights=arrays["layer0_weights"].astype(np.int16))
    with pytest.raises(DigitsModelError, match="layer0_weights must have dtype int8, not int16"):
        load_model(path)


def test_broken_layer_chain_is_named(tmp_path, arrays):
    path = _write(tmp_path, arrays, layer1_weights=arrays["layer1_weights"][:40])
    with pytest.raises(DigitsModelError, match=r"layer1_weights must have shape \(64, n\)"):
        load_model(path)


def test_invalid_layer_parameter_is_named(tmp_path, arrays):
    shift = arrays["layer2_shift"].copy()
    shift[4] = 31
    with pytest.raises(DigitsModelError, match="layer 2 is not a valid Dense layer"):
        load_model(_write(tmp_path, arrays, layer2_shift=shift))


def test_other_input_quantization_is_refused(tmp_path, arrays):
    with pytest.raises(DigitsModelError, match="input quantization must be scale"):
        load_model(_write(tmp_path, arrays, input_zero_point=np.int64(0)))


def test_bad_labels_are_refused(tmp_path, arrays):
    labels = arrays["test_labels"].copy()
    labels[0] = 10
    with pytest.raises(DigitsModelError, match="test_labels must be digits 0..9, not 10"):
        load_model(_write(tmp_path, arrays, test_labels=labels))


def test_accuracy_out_of_range_is_refused(tmp_path, arrays):
    with pytest.raises(DigitsModelError, match=r"float_accuracy must be in \[0, 1\], not 1.5"):
        load_model(_write(tmp_path, arrays, float_accuracy=np.float64(1.5)))


# --- the training script -------------------------------------------------------------------------

def test_script_without_sklearn_asks_for_it_and_exits_2(tmp_path):
    blocker = ("import runpy, sys; sys.modules['sklearn'] = None; "
               f"sys.argv = [{str(SCRIPT)!r}, '-o', {str(tmp_path / 'm.npz')!r}]; "
               f"runpy.run_path({str(SCRIPT)!r}, run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", blocker], capture_output=True, text=True,
                            timeout=60, cwd=REPO)
    assert result.returncode == 2, result.stderr
    assert "pip install scikit-learn" in result.stderr
    assert not (tmp_path / "m.npz").exists()


@pytest.mark.slow
def test_retraining_reproduces_the_committed_model(tmp_path, arrays):
    pytest.importorskip("sklearn")
    out = tmp_path / "retrained.npz"
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    result = subprocess.run([sys.executable, str(SCRIPT), "-o", str(out)], capture_output=True,
                            text=True, timeout=600, cwd=REPO, env=env)
    assert result.returncode == 0, result.stderr
    assert "seed=0" in result.stdout and "float accuracy" in result.stdout
    with np.load(out) as retrained:
        assert sorted(retrained.files) == sorted(arrays)
        for key in arrays:
            assert np.array_equal(retrained[key], arrays[key]), key
