"""ONNX losses with constant targets -> Keras 3 op nodes: NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss
(its LogSoftmax, then the same). The target (and class weights) are constants in a model file, so what
depends on them is computed at import: the picked class per position (TakeAlongAxis on the class axis) and
the coefficient -weight[target] (0 where ignore_index), then a product and the reduction (none, sum, mean:
the sum divided by the total weight counted). Contract: lowering.py.
Reference: onnx/reference/ops/op_negative_log_likelihood_loss.py, op_softmax_cross_entropy_loss.py.
"""
from __future__ import annotations

import numpy as np

from .lowering import NN, as_const, as_sym, lowering, refuse

WHOLE = {"class_name": "__slice__", "config": {"start": None, "stop": None, "step": None}}


def _nll(b, x, shape, target, weight, reduction: str, ignore_index) -> object:
    """The loss of log-probabilities ``x`` (N, C, d...: ``shape``) at constant ``target`` (N, d...)."""
    t = as_const(target, "target").astype(np.int64)
    if shape is None or len(shape) != t.ndim + 1 or shape[1] is None:
        raise refuse(f"input of shape {None if shape is None else list(shape)} for a target of shape {list(t.shape)}")
    if reduction not in ("none", "sum", "mean"):
        raise refuse(f"reduction={reduction}")
    ignored = np.zeros(t.shape, bool) if ignore_index is None else t == int(ignore_index)
    safe = np.where(ignored, 0, t)  # (N, d...) a valid class everywhere
    w = np.ones(shape[1], np.float64) if weight is None else as_const(weight, "weight").astype(np.float64)
    counted = np.where(ignored, 0.0, w[safe])  # (N, d...) each position's weight, 0 where ignored
    picked = b.op("TakeAlongAxis", [x, np.expand_dims(safe, 1)], inner=True, suffix="pick", axis=1)  # (N, 1, d...)
    picked = b.op("GetItem", [picked, [WHOLE, 0]], inner=True, suffix="squeeze")  # (N, d...)
    loss = b.op("Multiply", [picked, (-counted).astype(np.float32)], inner=True, suffix="weighted")
    if reduction == "none":
        return loss
    total = b.op("Sum", [loss], inner=True, suffix="total", axis=None, keepdims=False)
    if reduction == "sum":
        return total
    return b.op("Divide", [total, float(counted.sum())], inner=True, suffix="mean")


@lowering("NegativeLogLikelihoodLoss")
def NegativeLogLikelihoodLoss(b, input, target, weight=None, ignore_index=None, reduction="mean"):
    x = as_sym(b, input)
    return b.claim(_nll(b, x, b.shape(x), target, weight, reduction, ignore_index))


@lowering("SoftmaxCrossEntropyLoss")
def SoftmaxCrossEntropyLoss(b, scores, labels, weights=None, ignore_index=None, reduction="mean"):
    x = as_sym(b, scores)
    log_prob = b.op("LogSoftmax", [x], module=NN, inner=True, suffix="log_prob", axis=1)
    loss = b.claim(_nll(b, log_prob, b.shape(x), labels, weights, reduction, ignore_index))
    return [loss, log_prob]
