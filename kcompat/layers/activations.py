"""Keras 3 activation functions in NumPy, by the name Keras accepts.

Formulas follow keras/src/activations/activations.py and keras/src/backend/numpy/nn.py
(hard_sigmoid = relu6(x + 3) / 6, gelu exact erf form by default). Each keeps the
input dtype and stays finite at |x| = 1000 (softmax, log_softmax, softplus, log_sigmoid).
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from ..errors import UnsupportedError

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


_erf = np.frompyfunc(math.erf, 1, 1)


def erf(x: np.ndarray) -> np.ndarray:
    """Exact erf (computed in float64 by the C library), cast back to x's dtype."""
    return _erf(np.asarray(x, np.float64)).astype(x.dtype)


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
        raise ValueError(f"glu needs an even size on axis {axis}; received shape {x.shape}")
    a, b = np.split(x, 2, axis=axis)  # (..., 2n) -> (..., n) twice
    return a * sigmoid(b)


def activation_name(value: Any) -> str:
    """The activation's name from a config value: "relu", None, or a serialized function dict."""
    if value is None:
        return "linear"
    if isinstance(value, dict):  # {"module": "keras.activations", "class_name": "function", "config": "relu"}
        inner = value.get("config")
        if isinstance(inner, str):
            value = inner
        elif isinstance(inner, dict) and isinstance(inner.get("name"), str):
            value = inner["name"]
        else:
            value = value.get("class_name")
    if not isinstance(value, str):
        raise UnsupportedError(f"activation must be a name; received {value!r}")
    return value


def get_activation(value: Any, where: str = "") -> Callable[[np.ndarray], np.ndarray]:
    """Look up an activation by Keras name; unknown names are refused with the list of known ones."""
    name = activation_name(value)
    fn = ACTIVATIONS.get(name.lower()) if name else None
    if fn is None:
        prefix = f"{where}: " if where else ""
        raise UnsupportedError(f"{prefix}unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}")
    return fn


def activation_shape(name: str, shape: tuple) -> tuple:
    """Output shape of an activation: glu halves the last axis (Keras 3 reports it unhalved)."""
    if name == "glu" and shape and shape[-1] is not None:
        return (*shape[:-1], shape[-1] // 2)
    return shape
