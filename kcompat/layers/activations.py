"""Keras 3 activation functions in NumPy, by the name Keras accepts.

Formulas follow keras/src/activations/activations.py and keras/src/backend/numpy/nn.py
(hard_sigmoid = relu6(x + 3) / 6, gelu exact erf form by default). Each keeps the
input dtype and stays finite at |x| = 1000 (softmax, log_softmax, softplus, log_sigmoid).
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from ..errors import ShapeError, UnsupportedError

ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {}


def activation(*names: str):
    """Register an activation under one or more Keras names."""
    def wrap(fn):
        for n in names:
            ACTIVATIONS[n] = fn
        return fn
    return wrap


def _c(value: float, x: np.ndarray) -> np.ndarray:
    return np.asarray(value, x.dtype)


# W. J. Cody, "Rational Chebyshev approximations for the error function", Math. Comp. 23
# (1969) 631-637; coefficients from Netlib SPECFUN CALERF. Against math.erf: < 5e-16 relative
# (4 ULP). CALERF's split exp(-x^2) is dropped: it keeps erfc's relative accuracy, and erf = 1 - erfc
# needs only its absolute accuracy (tests/test_conformance.py::test_erf_matches_math_erf).
_ERF_A = (3.16112374387056560e00, 1.13864154151050156e02, 3.77485237685302021e02,
          3.20937758913846947e03, 1.85777706184603153e-1)
_ERF_B = (2.36012909523441209e01, 2.44024637934444173e02, 1.28261652607737228e03, 2.84423683343917062e03)
_ERFC_C = (5.64188496988670089e-1, 8.88314979438837594e00, 6.61191906371416295e01, 2.98635138197400131e02,
           8.81952221241769090e02, 1.71204761263407058e03, 2.05107837782607147e03, 1.23033935479799725e03,
           2.15311535474403846e-8)
_ERFC_D = (1.57449261107098347e01, 1.17693950891312499e02, 5.37181101862009858e02, 1.62138957456669019e03,
           3.29079923573345963e03, 4.36261909014324716e03, 3.43936767414372164e03, 1.23033935480374942e03)
_ERFC_P = (3.05326634961232344e-1, 3.60344899949804439e-1, 1.25781726111229246e-1, 1.60837851487422766e-2,
           6.58749161529837803e-4, 1.63153871373020978e-2)
_ERFC_Q = (2.56852019228982242e00, 1.87295284992346725e00, 5.27905102951428412e-1, 6.05183413124413191e-2,
           2.33520497626869185e-3)
_SQRT_1_PI = 1 / math.sqrt(math.pi)


def _rational(t: np.ndarray, lead: float, nums: tuple, dens: tuple, num0: float, den0: float) -> np.ndarray:
    """Cody's P(t) / Q(t) by Horner's rule, in place."""
    num, den = lead * t, t.copy()
    for a, b in zip(nums, dens):
        num += a
        num *= t
        den += b
        den *= t
    return (num + num0) / (den + den0)


def erf(x: np.ndarray) -> np.ndarray:
    """erf in float64 (Cody's three rational approximations), cast back to x's dtype."""
    x64 = np.asarray(x, np.float64)
    y = np.abs(x64)
    out = np.empty_like(x64)
    small = y <= 0.46875                   # erf = x R(x^2)
    mid = ~small & (y <= 4.0)              # erfc = exp(-x^2) R(|x|)
    big = ~small & ~mid                    # erfc = exp(-x^2) / |x| (1/sqrt(pi) - R(1/x^2) / x^2); NaN too
    xs = x64[small]
    out[small] = xs * _rational(xs * xs, _ERF_A[4], _ERF_A[:3], _ERF_B[:3], _ERF_A[3], _ERF_B[3])
    t = y[mid]
    out[mid] = np.exp(-t * t) * _rational(t, _ERFC_C[8], _ERFC_C[:7], _ERFC_D[:7], _ERFC_C[7], _ERFC_D[7])
    t = np.minimum(y[big], 26.5)           # erfc(26.5) < 1e-300: erf is 1.0 beyond, without underflow
    z = 1.0 / (t * t)
    r = _rational(z, _ERFC_P[5], _ERFC_P[:4], _ERFC_Q[:4], _ERFC_P[4], _ERFC_Q[4])
    out[big] = np.exp(-t * t) * (_SQRT_1_PI - z * r) / t
    out[~small] = np.copysign(1.0 - out[~small], x64[~small])  # erf = 1 - erfc, odd
    return out.astype(np.asarray(x).dtype, copy=False)


@activation("linear")
def linear(x):
    return x


@activation("relu")
def relu(x):
    return np.maximum(x, _c(0, x))


@activation("relu6")
def relu6(x):
    return np.clip(x, _c(0, x), _c(6, x))


@activation("leaky_relu")
def leaky_relu(x, negative_slope=0.2):
    return np.maximum(x, _c(negative_slope, x) * x)


@activation("elu")
def elu(x, alpha=1.0):
    return np.where(x >= 0, x, _c(alpha, x) * np.expm1(np.minimum(x, _c(0, x))))


@activation("selu")
def selu(x):
    alpha, scale = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946
    return _c(scale, x) * elu(x, alpha)


@activation("celu")
def celu(x, alpha=1.0):
    a = _c(alpha, x)
    return np.maximum(x, _c(0, x)) + a * np.expm1(np.minimum(x, _c(0, x)) / a)


@activation("exponential")
def exponential(x):
    return np.exp(x)


@activation("sigmoid")
def sigmoid(x):
    # exp of a non-positive number only: no overflow warning at |x| = 1000
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, _c(1, x) / (_c(1, x) + e), e / (_c(1, x) + e)).astype(x.dtype)


@activation("hard_sigmoid")
def hard_sigmoid(x):
    return relu6(x + _c(3, x)) / _c(6, x)


# Names only Keras 2 files mean (formats/keras/dialect.py from_keras2 writes them): not Keras 3 names.
KERAS2_HARD_SIGMOID = "keras2:hard_sigmoid"


def keras2_hard_sigmoid(x):
    """tf_keras/src/backend.py hard_sigmoid: clip(0.2 x + 0.5, 0, 1), in its order of operations."""
    return np.clip(x * _c(0.2, x) + _c(0.5, x), _c(0, x), _c(1, x))


KERAS2_ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {KERAS2_HARD_SIGMOID: keras2_hard_sigmoid}


@activation("hard_silu", "hard_swish")
def hard_silu(x):
    return x * hard_sigmoid(x)


@activation("silu", "swish")
def silu(x):
    return x * sigmoid(x)


@activation("tanh")
def tanh(x):
    return np.tanh(x)


@activation("hard_tanh")
def hard_tanh(x):
    return np.clip(x, _c(-1, x), _c(1, x))


@activation("tanh_shrink")
def tanh_shrink(x):
    return x - np.tanh(x)


@activation("softplus")
def softplus(x):
    return np.logaddexp(x, _c(0, x))


@activation("log_sigmoid")
def log_sigmoid(x):
    return -softplus(-x)


@activation("softsign")
def softsign(x):
    return x / (_c(1, x) + np.abs(x))


@activation("squareplus")
def squareplus(x, b=4):
    return (x + np.sqrt(x * x + _c(b, x))) / _c(2, x)


@activation("sparse_plus")
def sparse_plus(x):
    return np.where(x <= -1, _c(0, x), np.where(x < 1, _c(0.25, x) * (x + _c(1, x)) ** 2, x)).astype(x.dtype)


@activation("sparse_sigmoid")
def sparse_sigmoid(x):
    return np.where(x <= -1, _c(0, x), np.where(x >= 1, _c(1, x), _c(0.5, x) * (x + _c(1, x)))).astype(x.dtype)


@activation("hard_shrink")
def hard_shrink(x, threshold=0.5):
    return np.where(np.abs(x) > _c(threshold, x), x, _c(0, x))


@activation("soft_shrink")
def soft_shrink(x, threshold=0.5):
    t = _c(threshold, x)
    return np.where(x > t, x - t, np.where(x < -t, x + t, _c(0, x))).astype(x.dtype)


@activation("gelu")
def gelu(x, approximate=False):
    if approximate:
        k = _c(math.sqrt(2 / math.pi), x)
        return x * _c(0.5, x) * (_c(1, x) + np.tanh(k * (x + _c(0.044715, x) * x ** 3)))
    return x * (erf(x / _c(math.sqrt(2), x)) + _c(1, x)) / _c(2, x)


@activation("mish")
def mish(x):
    return x * np.tanh(softplus(x))


AXIS_ACTIVATIONS = {"softmax", "log_softmax", "sparsemax", "glu"}  # along an axis, not elementwise


@activation("softmax")
def softmax(x, axis=-1):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))  # (..., n): max-shifted, exp <= 1
    return e / np.sum(e, axis=axis, keepdims=True)


@activation("log_softmax")
def log_softmax(x, axis=-1):
    shifted = x - np.max(x, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


@activation("sparsemax")
def sparsemax(x, axis=-1):
    z = -np.sort(-x, axis=axis)  # descending
    cumsum = np.cumsum(z, axis=axis)
    shape = [1] * x.ndim
    shape[axis] = -1
    r = np.arange(1, x.shape[axis] + 1, dtype=x.dtype).reshape(shape)
    support = z - (cumsum - _c(1, x)) / r > 0
    k = np.sum(support, axis=axis, keepdims=True).astype(x.dtype)
    tau = (np.sum(np.where(support, cumsum, _c(0, x)), axis=axis, keepdims=True) - _c(1, x)) / k
    return np.maximum(x - tau, _c(0, x))


@activation("glu")
def glu(x, axis=-1):
    if x.shape[axis] % 2:
        raise ShapeError(f"glu needs an even size on axis {axis}. Received: x.shape={x.shape}")
    a, b = np.split(x, 2, axis=axis)  # (..., 2n) -> (..., n) twice
    return a * sigmoid(b)


IN_PLACE: dict[str, Callable[[np.ndarray], Any]] = {  # the same values as ACTIVATIONS, written over the input
    "linear": lambda x: x,
    # np.clip: NumPy 2.4's maximum against a scalar has no SIMD loop and runs 3-4x slower than clip
    "relu": lambda x: (np.clip(x, _c(0, x), _c(np.inf, x), out=x) if x.dtype.kind == "f"
                       else np.maximum(x, _c(0, x), out=x)),
    "relu6": lambda x: np.clip(x, _c(0, x), _c(6, x), out=x),
}


def in_place_activation(name: str) -> Callable[[np.ndarray], Any] | None:
    """The activation ``name`` (elementwise) as a function that overwrites its input; None for linear."""
    if name == "linear":
        return None
    if name in IN_PLACE:
        return IN_PLACE[name]
    act = get_activation(name)

    def run(y: np.ndarray) -> None:
        y[...] = act(y)
    return run


LONG_ROW = 2048  # a bias add runs over rows of at least this many elements (a short inner loop is slow)


class BiasActivation:
    """An epilogue: ``y += bias`` then an elementwise activation, in place on a contiguous output block
    (..., F). ``bias`` and ``activation`` (in place, or None) are public: a kernel that adds the bias
    itself (a matmul with a ones column, conv_kernels.py) runs ``activation`` alone."""

    __slots__ = ("bias", "activation", "_rows")

    def __init__(self, bias: np.ndarray | None, activation: Callable[[np.ndarray], Any] | None):
        self.bias, self.activation, self._rows = bias, activation, None

    def __call__(self, y: np.ndarray) -> None:
        if self.bias is not None:
            self.add_bias(y)
        if self.activation is not None:
            self.activation(y)

    def add_bias(self, y: np.ndarray) -> None:
        """y += bias over long rows: R rows of F as one row of R*F against the bias tiled R times (same sums)."""
        f = self.bias.shape[-1]
        if f >= LONG_ROW or not y.flags.c_contiguous or y.ndim == 0 or y.shape[-1] != f or self.bias.ndim != 1:
            np.add(y, self.bias, out=y)  # (..., F) + (F,)
            return
        if self._rows is None:
            self._rows = np.tile(self.bias, -(-LONG_ROW // f))  # (R*F,)
        flat, width = y.reshape(-1), self._rows.shape[0]
        whole = flat.shape[0] // width * width
        np.add(flat[:whole].reshape(-1, width), self._rows, out=flat[:whole].reshape(-1, width))  # (n, R*F) + (R*F,)
        if whole < flat.shape[0]:
            rest = flat[whole:]  # whole rows of F: y.size and width are both multiples of F
            np.add(rest.reshape(-1, f), self.bias, out=rest.reshape(-1, f))


ALONG_AN_AXIS = frozenset({"softmax", "log_softmax", "sparsemax", "glu"})  # the others act on each element alone


def is_elementwise(name: str) -> bool:
    """True when the activation maps each element on its own (so it can run on any block of a tensor)."""
    return name not in ALONG_AN_AXIS


def activation_name(value: Any, where: str = "") -> str:
    """The activation's name from a config value: "relu", None, or a serialized function dict."""
    if value is None:
        return "linear"
    original = value
    if isinstance(value, dict):  # {"module": "keras.activations", "class_name": "function", "config": "relu"}
        inner = value.get("config")
        if isinstance(inner, str):
            value = inner
        elif isinstance(inner, dict) and isinstance(inner.get("name"), str):
            value = inner["name"]
        else:
            value = value.get("class_name")
    if not isinstance(value, str):
        prefix = f"{where}: " if where else ""
        raise UnsupportedError(f"{prefix}'activation' must be an activation name. Received: activation={original!r}")
    return value


def get_activation(value: Any, where: str = "") -> Callable[[np.ndarray], np.ndarray]:
    """Look up an activation by Keras name; unknown names are refused with the list of known ones."""
    name = activation_name(value, where)
    fn = ACTIVATIONS.get(name) or KERAS2_ACTIVATIONS.get(name)  # case-sensitive, as Keras: "ReLU" is refused
    if fn is None:
        prefix = f"{where}: " if where else ""
        raise UnsupportedError(f"{prefix}unknown activation; expected one of {sorted(ACTIVATIONS)}. "
                               f"Received: activation={name!r}")
    return fn


def activation_shape(name: str, shape: tuple) -> tuple:
    """Output shape of an activation: glu halves the last axis (Keras 3 reports it unhalved)."""
    if name == "glu" and shape and shape[-1] is not None:
        if shape[-1] % 2:
            raise ShapeError(f"glu needs an even last axis. Received: input_shape={shape}")
        return (*shape[:-1], shape[-1] // 2)
    return shape
