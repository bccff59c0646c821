"""Quantized layers the compiler understands: :class:`Dense`, :class:`Conv2d` and :class:`Network`.

A layer holds constant int8 weights, an optional int32 bias and the requantization parameters of
its int8 output (:class:`Requant`). Everything is checked when the layer is built: a wrong dtype,
shape or range raises ``TypeError``/``ValueError`` naming the field and the value given. Each layer
has a ``reference(x)`` computed with the golden model (:mod:`tessera.sim.golden`) and nothing else.

Activations are int8. A :class:`Dense` takes ``(M, K)`` and gives ``(M, N)``; a :class:`Conv2d`
takes NHWC ``(N, H, W, Cin)`` and gives ``(N, OH, OW, Cout)``. A convolution is a dense layer on
its im2col matrix (:meth:`Conv2d.im2col`) with the weights reshaped to ``(KH*KW*Cin, Cout)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import golden

__all__ = ["Requant", "Dense", "Conv2d", "Network"]


def _describe(value):
    if isinstance(value, np.ndarray):
        return f"an array of dtype {value.dtype} with shape {value.shape}"
    return repr(value)


def _int8_array(owner, name, value, ndim, dims):
    if not isinstance(value, np.ndarray) or value.dtype != np.int8 or value.ndim != ndim:
        raise TypeError(f"{owner}.{name} must be a {ndim}-D int8 numpy array {dims}, "
                        f"not {_describe(value)}")
    if 0 in value.shape:
        raise ValueError(f"{owner}.{name} must have no empty dimension, not shape {value.shape}")
    return _frozen(value)


def _frozen(array):
    array = np.array(array, copy=True)
    array.flags.writeable = False
    return array


def _int_scalar(owner, name, value, lo, hi):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{owner}.{name} must be an integer in [{lo}, {hi}], not {value!r}")
    if not lo <= int(value) <= hi:
        raise ValueError(f"{owner}.{name} must be in [{lo}, {hi}], not {int(value)!r}")
    return int(value)


def _per_channel(owner, name, value, lo, hi, n):
    """A scalar or an (n,) integer array with every element in [lo, hi], as an int32 array (n,)
    or a Python int."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return _int_scalar(owner, name, value, lo, hi)
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "iu" or value.ndim != 1:
        raise TypeError(f"{owner}.{name} must be an integer or a 1-D integer numpy array of "
                        f"{n} per-channel values, not {_describe(value)}")
    if value.shape[0] != n:
        raise ValueError(f"{owner}.{name} must have {n} per-channel values (one per output "
                         f"channel), not shape {value.shape}")
    bad = (value < lo) | (value > hi)
    if bad.any():
        raise ValueError(f"{owner}.{name} must be in [{lo}, {hi}], not "
                         f"{int(value[bad][0])!r} (index {int(np.argmax(bad))})")
    return _frozen(value.astype(np.int32))


@dataclass(frozen=True, eq=False)
class Requant:
    """Requantization of an int32 accumulator to int8 (:func:`golden.requantize`).

    ``multiplier`` in [0, INT32_MAX] and ``shift`` in [-31, 30] are Python ints (per tensor) or
    int32 arrays ``(N,)`` (per output channel); ``act_min <= act_max`` clamp the output (ReLU,
    ReLU6). ``channels`` is N, the number of output channels the parameters are checked against.
    """
    channels: int
    multiplier: int | np.ndarray
    shift: int | np.ndarray
    output_zero_point: int = 0
    act_min: int = golden.INT8_MIN
    act_max: int = golden.INT8_MAX
    owner: str = field(default="Requant", repr=False)

    def __post_init__(self):
        o = self.owner
        n = _int_scalar(o, "channels", self.channels, 1, 1 << 31)
        object.__setattr__(self, "multiplier", _per_channel(o, "multiplier", self.multiplier,
                                                            0, golden.INT32_MAX, n))
        object.__setattr__(self, "shift", _per_channel(o, "shift", self.shift, golden.SHIFT_MIN,
                                                       golden.SHIFT_MAX, n))
        for name in ("output_zero_point", "act_min", "act_max"):
            object.__setattr__(self, name, _int_scalar(o, name, getattr(self, name),
                                                       golden.INT8_MIN, golden.INT8_MAX))
        if self.act_min > self.act_max:
            raise ValueError(f"{o}.act_min must be <= act_max ({self.act_max}), "
                             f"not {self.act_min!r}")

    def multipliers(self):
        """Per-channel multipliers, int32 ``(N,)`` (a per-tensor value repeated)."""
        return np.broadcast_to(np.int32(self.multiplier), (self.channels,)).astype(np.int32)

    def shifts(self):
        """Per-channel shifts, int32 ``(N,)`` (a per-tensor value repeated)."""
        return np.broadcast_to(np.int32(self.shift), (self.channels,)).astype(np.int32)

    def apply(self, acc):
        """``golden.requantize`` of an int32 accumulator whose last axis has N channels."""
        return golden.requantize(acc, self.multiplier, self.shift, self.output_zero_point,
                                 self.act_min, self.act_max)


def _bias(owner, bias, n):
    if bias is None:
        return None
    if not isinstance(bias, np.ndarray) or bias.dtype != np.int32 or bias.shape != (n,):
        raise TypeError(f"{owner}.bias must be None or an int32 numpy array of shape ({n},), "
                        f"not {_describe(bias)}")
    return _frozen(bias)


@dataclass(frozen=True, eq=False)
class Dense:
    """A fully connected layer: ``y = requantize(x @ weights + bias)``, x int8 ``(M, K)``.

    ``weights`` int8 ``(K, N)``; ``bias`` int32 ``(N,)`` or None; ``multiplier``/``shift``
    per tensor (int) or per channel (``(N,)``), see :class:`Requant`.
    """
    weights: np.ndarray
    bias: np.ndarray | None
    multiplier: int | np.ndarray
    shift: int | np.ndarray
    output_zero_point: int = 0
    act_min: int = golden.INT8_MIN
    act_max: int = golden.INT8_MAX

    def __post_init__(self):
        w = _int8_array("Dense", "weights", self.weights, 2, "(K, N)")
        object.__setattr__(self, "weights", w)
        object.__setattr__(self, "bias", _bias("Dense", self.bias, w.shape[1]))
        rq = Requant(w.shape[1], self.multiplier, self.shift, self.output_zero_point,
                     self.act_min, self.act_max, owner="Dense")
        object.__setattr__(self, "multiplier", rq.multiplier)
        object.__setattr__(self, "shift", rq.shift)

    @property
    def in_features(self):
        return self.weights.shape[0]

    @property
    def out_features(self):
        return self.weights.shape[1]

    @property
    def requant(self):
        return Requant(self.out_features, self.multiplier, self.shift, self.output_zero_point,
                       self.act_min, self.act_max, owner="Dense")

    def matrix(self):
        """The GEMM operand: weights ``(K, N)``."""
        return self.weights

    def gemm_bias(self):
        """The int32 bias the GEMM adds (None for no bias)."""
        return self.bias

    def check_input(self, x, name="x"):
        """Raise unless ``x`` is an int8 ``(M, K)`` array for this layer."""
        if not isinstance(x, np.ndarray) or x.dtype != np.int8 or x.ndim != 2:
            raise TypeError(f"{name} must be a 2-D int8 numpy array (M, {self.in_features}), "
                            f"not {_describe(x)}")
        if x.shape[1] != self.in_features or x.shape[0] < 1:
            raise ValueError(f"{name} must have shape (M >= 1, {self.in_features}), "
                             f"not {x.shape}")

    def output_shape(self, input_shape):
        return (input_shape[0], self.out_features)

    def reference(self, x):
        """``golden.dense(x, weights, bias, multiplier, shift, ...)``: int8 ``(M, N)``."""
        self.check_input(x)
        return golden.dense(x, self.weights, self.bias, self.multiplier, self.shift,
                            self.output_zero_point, self.act_min, self.act_max)


def _pair(owner, name, value, lo):
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return tuple(_int_scalar(owner, name, v, lo, 1 << 15) for v in value)
    v = _int_scalar(owner, name, value, lo, 1 << 15)
    return (v, v)


@dataclass(frozen=True, eq=False)
class Conv2d:
    """A 2-D convolution on NHWC int8 input, as im2col + a dense GEMM.

    ``weights`` int8 ``(KH, KW, Cin, Cout)``; ``stride`` and ``padding`` an int or a pair
    ``(vertical, horizontal)``; the padding value is ``input_zero_point``. The input zero point is
    folded into the bias (:meth:`gemm_bias`, the golden model's convention), so padded positions add
    nothing, exactly as TFLite's int8 convolution. Output ``(N, OH, OW, Cout)`` with
    ``OH = (H + 2*pad_h - KH) // stride_h + 1`` (likewise OW).
    """
    weights: np.ndarray
    bias: np.ndarray | None
    multiplier: int | np.ndarray
    shift: int | np.ndarray
    stride: int | tuple = 1
    padding: int | tuple = 0
    input_zero_point: int = 0
    output_zero_point: int = 0
    act_min: int = golden.INT8_MIN
    act_max: int = golden.INT8_MAX

    def __post_init__(self):
        w = _int8_array("Conv2d", "weights", self.weights, 4, "(KH, KW, Cin, Cout)")
        object.__setattr__(self, "weights", w)
        object.__setattr__(self, "bias", _bias("Conv2d", self.bias, w.shape[3]))
        object.__setattr__(self, "stride", _pair("Conv2d", "stride", self.stride, 1))
        object.__setattr__(self, "padding", _pair("Conv2d", "padding", self.padding, 0))
        object.__setattr__(self, "input_zero_point",
                           _int_scalar("Conv2d", "input_zero_point", self.input_zero_point,
                                       golden.INT8_MIN, golden.INT8_MAX))
        rq = Requant(w.shape[3], self.multiplier, self.shift, self.output_zero_point,
                     self.act_min, self.act_max, owner="Conv2d")
        object.__setattr__(self, "multiplier", rq.multiplier)
        object.__setattr__(self, "shift", rq.shift)

    @property
    def kernel_size(self):
        return self.weights.shape[:2]

    @property
    def in_channels(self):
        return self.weights.shape[2]

    @property
    def out_channels(self):
        return self.weights.shape[3]

    @property
    def requant(self):
        return Requant(self.out_channels, self.multiplier, self.shift, self.output_zero_point,
                       self.act_min, self.act_max, owner="Conv2d")

    @property
    def is_pointwise(self):
        """True when im2col is only a reshape (1x1 kernel, stride 1, no padding)."""
        return self.kernel_size == (1, 1) and self.stride == (1, 1) and self.padding == (0, 0)

    def matrix(self):
        """The GEMM operand: weights reshaped to ``(KH*KW*Cin, Cout)`` (rows ky, kx, cin)."""
        kh, kw, cin, cout = self.weights.shape
        return self.weights.reshape(kh * kw * cin, cout)

    def gemm_bias(self):
        """The int32 bias the GEMM adds: ``bias - input_zero_point * sum_k W[k, :]`` (wrapping),
        or ``bias`` (None for none) when the input zero point is 0."""
        if self.input_zero_point == 0:
            return self.bias
        w = self.matrix()
        zx = np.full((1, w.shape[0]), self.input_zero_point, np.int8)
        folded = golden.gemm(zx, w)[0].astype(np.int64)
        bias = np.zeros(w.shape[1], np.int64) if self.bias is None else self.bias.astype(np.int64)
        return golden.wrap_int32(bias - folded)

    def check_input(self, x, name="x"):
        """Raise unless ``x`` is an int8 NHWC array with ``Cin`` channels and an output >= 1x1."""
        if not isinstance(x, np.ndarray) or x.dtype != np.int8 or x.ndim != 4:
            raise TypeError(f"{name} must be a 4-D int8 numpy array (N, H, W, "
                            f"{self.in_channels}), not {_describe(x)}")
        self.output_shape(x.shape, name)

    def output_shape(self, input_shape, name="x"):
        """``(N, OH, OW, Cout)`` for an NHWC input shape; raises for an unusable shape."""
        if len(input_shape) != 4:
            raise ValueError(f"{name} must be NHWC (4-D), not shape {tuple(input_shape)}")
        n, h, w, cin = input_shape
        if cin != self.in_channels or n < 1:
            raise ValueError(f"{name} must have shape (N >= 1, H, W, {self.in_channels}), "
                             f"not {tuple(input_shape)}")
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        oh = (h + 2 * ph - kh) // sh + 1
        ow = (w + 2 * pw - kw) // sw + 1
        if h + 2 * ph < kh or w + 2 * pw < kw:
            raise ValueError(f"{name} of shape {tuple(input_shape)} is smaller than the "
                             f"{kh}x{kw} kernel with padding {self.padding}")
        return (n, oh, ow, self.out_channels)

    def im2col(self, x):
        """The im2col matrix, int8 ``(N*OH*OW, KH*KW*Cin)``.

        Row ``(n*OH + oh)*OW + ow`` holds the input patch of output pixel (n, oh, ow); column
        ``(ky*KW + kx)*Cin + c`` holds ``x[n, oh*stride_h + ky - pad_h, ow*stride_w + kx - pad_w,
        c]``, or ``input_zero_point`` where that position lies in the padding.
        """
        self.check_input(x)
        n, h, w, cin = x.shape
        _, oh, ow, _ = self.output_shape(x.shape)
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        padded = np.full((n, h + 2 * ph, w + 2 * pw, cin), self.input_zero_point, np.int8)
        padded[:, ph:ph + h, pw:pw + w, :] = x
        cols = np.empty((n, oh, ow, kh, kw, cin), np.int8)
        for ky in range(kh):
            for kx in range(kw):
                cols[:, :, :, ky, kx, :] = padded[:, ky:ky + sh * (oh - 1) + 1:sh,
                                                  kx:kx + sw * (ow - 1) + 1:sw, :]
        return cols.reshape(n * oh * ow, kh * kw * cin)

    def reference(self, x):
        """``golden.dense(im2col(x), matrix(), gemm_bias(), ...)`` as ``(N, OH, OW, Cout)``."""
        cols = self.im2col(x)
        y = golden.dense(cols, self.matrix(), self.gemm_bias(), self.multiplier, self.shift,
                         self.output_zero_point, self.act_min, self.act_max)
        return y.reshape(self.output_shape(x.shape))


@dataclass(frozen=True, eq=False)
class Network:
    """Layers applied in order. A Conv2d output feeding a Dense is flattened per sample
    (``(N, OH, OW, C)`` -> ``(N, OH*OW*C)``, the same bytes); a Conv2d needs an NHWC input, so it
    cannot follow a Dense."""
    layers: tuple

    def __post_init__(self):
        layers = tuple(self.layers) if isinstance(self.layers, (list, tuple)) else None
        if not layers:
            raise ValueError(f"Network.layers must be a non-empty list of Dense/Conv2d layers, "
                             f"not {self.layers!r}")
        for i, layer in enumerate(layers):
            if not isinstance(layer, (Dense, Conv2d)):
                raise TypeError(f"Network.layers[{i}] must be a Dense or Conv2d layer, "
                                f"not {type(layer).__name__}")
            if i and isinstance(layer, Conv2d) and isinstance(layers[i - 1], Dense):
                raise ValueError(f"Network.layers[{i}] is a Conv2d after a Dense: a Conv2d needs "
                                 f"an NHWC input, a Dense gives (M, N)")
            if i and isinstance(layer, Dense) and isinstance(layers[i - 1], Dense) \
                    and layers[i - 1].out_features != layer.in_features:
                raise ValueError(f"Network.layers[{i}] takes {layer.in_features} features but "
                                 f"layers[{i - 1}] gives {layers[i - 1].out_features}")
        object.__setattr__(self, "layers", layers)

    def shapes(self, input_shape):
        """The input shape of every layer (flattened where a Dense follows a Conv2d) and the
        output shape: a list of ``len(layers) + 1`` shapes. Raises for incompatible shapes."""
        shapes = [tuple(input_shape)]
        for i, layer in enumerate(self.layers):
            shape = shapes[-1]
            if isinstance(layer, Dense):
                if len(shape) == 4:
                    shape = (shape[0], shape[1] * shape[2] * shape[3])
                    shapes[-1] = shape
                if len(shape) != 2 or shape[1] != layer.in_features or shape[0] < 1:
                    raise ValueError(f"layers[{i}] (Dense) needs (M >= 1, {layer.in_features}) "
                                     f"inputs, not shape {shape}")
            shapes.append(tuple(layer.output_shape(shape, f"the input of layers[{i}]")
                                if isinstance(layer, Conv2d) else layer.output_shape(shape)))
        return shapes

    def reference(self, x):
        """The golden output: each layer's ``reference`` on the previous layer's output."""
        if not isinstance(x, np.ndarray) or x.dtype != np.int8:
            raise TypeError(f"x must be an int8 numpy array, not {_describe(x)}")
        self.shapes(x.shape)
        for layer in self.layers:
            if isinstance(layer, Dense) and x.ndim == 4:
                x = x.reshape(x.shape[0], -1)
            x = layer.reference(x)
        return x
