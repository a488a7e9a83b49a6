"""Categorical preprocessing: CategoryEncoding, Discretization, IntegerLookup.

References: keras/src/layers/preprocessing/category_encoding.py, discretization.py, index_lookup.py,
integer_lookup.py and keras/src/utils/numerical_utils.py / tf_utils.py (``encode_categorical_inputs``:
on TensorFlow, multi_hot / count of a rank <= 2 input are a bincount that drops values >= depth).
IntegerLookup reads its vocabulary from the config (or, for an adapted layer, from the .keras file's
``assets/.../vocabulary.txt``, which the reader puts in the config); a vocabulary that starts with the
mask / OOV tokens has them stripped, as ``set_vocabulary`` does. String vocabularies are refused.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ShapeError
from .base import Layer, fmt_shape, register

MODES = ("int", "one_hot", "multi_hot", "count")


def encode(indices: np.ndarray, mode: str, depth: int, dtype=np.float32) -> np.ndarray:
    """encode_categorical_inputs: one_hot appends (or replaces a size-1 last axis with) ``depth``;
    multi_hot / count fold the last axis of a rank <= 2 input into ``depth`` bins."""
    if mode == "one_hot":
        if indices.ndim > 1 and indices.shape[-1] == 1:
            indices = indices[..., 0]  # (N, 1) -> (N,)
        hot = indices[..., None] == np.arange(depth)  # (..., ) -> (..., depth); out of range -> zeros
        return hot.astype(dtype)
    hot = indices[..., None] == np.arange(depth)  # (N, F) -> (N, F, depth)
    counts = hot.sum(axis=-2)  # -> (N, depth); values >= depth fall outside every bin
    return (counts > 0 if mode == "multi_hot" else counts).astype(dtype)


def encoded_shape(input_shape: tuple, mode: str, depth: int) -> tuple:
    """The output shape of ``encode`` (Keras's compute_output_shape)."""
    if mode == "int":
        return tuple(input_shape)
    if mode == "one_hot":
        if len(input_shape) > 1 and input_shape[-1] == 1:
            return (*input_shape[:-1], depth)
        return (*input_shape, depth)
    return (*input_shape[:-1], depth)


class _Encoding(Layer):
    """Shared: ``output_mode`` and the rank limit of the bincount modes."""

    modes = MODES

    def init_mode(self, default: str) -> None:
        mode = self.get("output_mode", default)
        self.output_mode = "multi_hot" if mode == "binary" else self.choice("output_mode", self.modes, default)
        if self.get("sparse", False):
            raise self.fail("sparse outputs are not supported (kcompat computes dense arrays)")

    def check_rank(self, input_shape) -> None:
        if self.output_mode in ("multi_hot", "count", "tf_idf") and len(input_shape) > 2:
            raise self.fail(f"output_mode='{self.output_mode}' is supported on inputs of rank <= 2 (where Keras's "
                            f"declared and computed shapes agree). Received: input_shape={fmt_shape(input_shape)}")


@register("CategoryEncoding")
class CategoryEncoding(_Encoding):
    """Integer categories in [0, num_tokens) -> one_hot / multi_hot / count vectors (float32)."""

    modes = ("one_hot", "multi_hot", "count")

    def __init__(self, config, name=None):
        super().__init__(config, name)
        self.num_tokens = self.positive_int("num_tokens")
        self.init_mode("multi_hot")

    def output_shape(self, input_shape):
        self.check_rank(input_shape)
        return encoded_shape(input_shape, self.output_mode, self.num_tokens)

    def call_node(self, args, kwargs, weights):
        weights_in = kwargs.get("count_weights", args[1] if len(args) > 1 else None)
        return self.forward(args[0], weights_in)

    def node_input_shape(self, args, kwargs):
        return args[0]

    def forward(self, x, count_weights=None):
        idx = np.asarray(x).astype(np.int64)
        if idx.size and idx.min() < 0:
            raise ShapeError(f"layer '{self.name}' (CategoryEncoding): values must be in [0, {self.num_tokens}). "
                             f"Received: min={int(idx.min())}")
        if count_weights is None:
            return encode(idx, self.output_mode, self.num_tokens)
        if self.output_mode != "count":
            raise self.fail("count_weights is only used with output_mode='count'")
        idx2 = idx[:, None] if idx.ndim == 1 else idx
        w = np.asarray(count_weights, np.float32).reshape(idx2.shape)
        hot = idx2[..., None] == np.arange(self.num_tokens)  # (N, F, depth)
        return np.sum(hot * w[..., None], axis=-2).astype(np.float32)

    def explain(self, input_shape, output_shape):
        return f"{self.output_mode} encoding of categories 0..{self.num_tokens - 1}; 0 params"


@register("Discretization")
class Discretization(_Encoding):
    """Bucket index of each value (bisect right over ``bin_boundaries``), then optionally encoded."""

    def __init__(self, config, name=None):
        super().__init__(config, name)
        bounds = self.config.get("bin_boundaries")
        if not isinstance(bounds, (list, tuple)) or any(isinstance(b, bool) or not isinstance(b, (int, float))
                                                       for b in bounds):
            raise self.fail(f"needs 'bin_boundaries' (a list of numbers: set at construction or by adapt). "
                            f"Received: bin_boundaries={bounds!r}")
        self.bounds = np.asarray(bounds, np.float32)
        self.init_mode("int")

    def output_shape(self, input_shape):
        self.check_rank(input_shape)
        return encoded_shape(input_shape, self.output_mode, len(self.bounds) + 1)

    def forward(self, x):
        idx = np.digitize(x.astype(np.float32, copy=False), self.bounds).astype(np.int32)  # boundary[i-1] <= x < boundary[i]
        return idx if self.output_mode == "int" else encode(idx, self.output_mode, len(self.bounds) + 1)

    def explain(self, input_shape, output_shape):
        return f"bucket index among {len(self.bounds) + 1} bins ({self.output_mode}); 0 params"


@register("IntegerLookup")
class IntegerLookup(_Encoding):
    """Integer tokens -> vocabulary indices (after the mask / OOV indices), or back with ``invert``."""

    modes = MODES + ("tf_idf",)

    def __init__(self, config, name=None):
        super().__init__(config, name)
        self.init_mode("int")
        self.invert = bool(self.get("invert", False))
        self.num_oov = self.config.get("num_oov_indices", 1)
        if isinstance(self.num_oov, bool) or not isinstance(self.num_oov, int) or self.num_oov < 0:
            raise self.fail(f"'num_oov_indices' must be a non-negative integer. Received: {self.num_oov!r}")
        if self.num_oov > 1 and self.get("oov_method", "floormod") != "floormod":
            raise self.fail("oov_method='farmhash' needs TensorFlow's FarmHash; only 'floormod' is supported")
        self.mask_token = self.config.get("mask_token")
        self.oov_token = self.get("oov_token", -1)
        self.max_tokens = self.config.get("max_tokens")
        self.pad = bool(self.get("pad_to_max_tokens", False))
        self.oov_start = 1 if self.mask_token is not None and self.output_mode == "int" else 0
        self.token_start = self.oov_start + self.num_oov
        self.tokens = self._tokens(self.config.get("vocabulary"))
        self.idf = None
        if self.output_mode == "tf_idf":
            self.idf = self._idf(self.config.get("idf_weights"))

    def _tokens(self, vocab: Any) -> np.ndarray:
        if isinstance(vocab, dict) and vocab.get("class_name") == "__numpy__":
            vocab = vocab.get("config", {}).get("value")
        if not isinstance(vocab, (list, tuple)) or not vocab or \
                any(isinstance(t, bool) or not isinstance(t, int) for t in vocab):
            raise self.fail(f"needs a non-empty integer 'vocabulary' (in the config, or the .keras file's "
                            f"assets). Received: vocabulary={vocab!r}")
        specials = [self.mask_token] * self.oov_start + [self.oov_token] * self.num_oov
        self.found_specials = list(vocab[:self.token_start]) == specials
        return np.asarray(vocab[self.token_start:] if self.found_specials else vocab, np.int64)

    def _idf(self, idf: Any) -> np.ndarray:
        if not isinstance(idf, (list, tuple)) or len(idf) != len(self.tokens) + (self.token_start if self.found_specials else 0):
            raise self.fail("output_mode='tf_idf' needs 'idf_weights' in the config, one per vocabulary entry")
        idf = np.asarray(idf, np.float32)
        if not self.found_specials:
            idf = np.concatenate([np.full(self.token_start, np.average(idf), np.float32), idf])
        back = self.depth - len(idf)
        return np.concatenate([idf, np.zeros(max(back, 0), np.float32)]) if self.pad else idf

    def saved_state(self):
        return {"idf_weights": self.idf} if self.idf is not None else {}  # keras IndexLookup.save_own_variables

    @property
    def depth(self) -> int:
        return self.max_tokens if self.pad and self.max_tokens else self.token_start + len(self.tokens)

    def output_shape(self, input_shape):
        self.check_rank(input_shape)
        mode = "count" if self.output_mode == "tf_idf" else self.output_mode
        return encoded_shape(input_shape, mode, self.depth)

    def lookup(self, x: np.ndarray) -> np.ndarray:
        """Token -> index: vocabulary position + token_start; OOV -> oov_start (+ floormod); mask -> 0."""
        order = np.argsort(self.tokens, kind="stable")
        pos = np.searchsorted(self.tokens[order], x)
        pos = np.clip(pos, 0, len(order) - 1)
        found = self.tokens[order][pos] == x
        out = np.where(found, order[pos] + self.token_start, -1).astype(np.int64)
        if self.num_oov == 0:
            if np.any(~found):
                raise ShapeError(f"layer '{self.name}' (IntegerLookup): with num_oov_indices=0 every input must "
                                 f"be in the vocabulary; found {np.unique(x[~found])[:5].tolist()}")
        else:
            oov = self.oov_start + (np.mod(x, self.num_oov) if self.num_oov > 1 else 0)
            out = np.where(found, out, oov)
        if self.mask_token is not None:
            mask_value = 0 if self.output_mode == "int" else np.iinfo(np.int64).max  # dropped by the encoding
            out = np.where(x == self.mask_token, mask_value, out)
        return out

    def inverse(self, x: np.ndarray) -> np.ndarray:
        """Index -> token: token_start.. -> vocabulary; 0 -> mask token (if any); anything else -> oov_token."""
        rel = x - self.token_start
        ok = (rel >= 0) & (rel < len(self.tokens))
        out = np.where(ok, self.tokens[np.clip(rel, 0, len(self.tokens) - 1)], self.oov_token).astype(np.int64)
        if self.mask_token is not None:
            out = np.where(x == 0, self.mask_token, out)
        return out

    def forward(self, x):
        x = np.asarray(x).astype(np.int64)
        if self.invert:
            return self.inverse(x)
        idx = self.lookup(x)
        if self.output_mode == "int":
            return idx
        mode = "count" if self.output_mode == "tf_idf" else self.output_mode
        out = encode(idx, mode, self.depth)
        return out * self.idf if self.idf is not None else out

    def explain(self, input_shape, output_shape):
        what = "index -> token" if self.invert else f"token -> index ({self.output_mode})"
        return (f"{what} over a vocabulary of {len(self.tokens)} tokens after {self.token_start} reserved "
                f"index(es); 0 params")
