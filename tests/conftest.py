"""Shared test helpers: real Keras (TensorFlow backend) is the oracle."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"


@pytest.fixture(scope="session")
def keras():
    """The real Keras 3 module (TensorFlow backend). The dev install always has it: a missing or broken
    Keras is a failure here, never a skip."""
    import keras
    return keras


def to_kcompat(kmodel, tmp_path, name="m"):
    """Save a real Keras model as .keras and load it with kcompat (never sharing code with Keras)."""
    import kcompat
    path = Path(tmp_path) / f"{name}.keras"
    kmodel.save(path)
    return kcompat.load(str(path))


def rand(shape, seed=0, scale=1.0):
    """Seeded float32 normal data."""
    return (np.random.default_rng(seed).normal(size=shape) * scale).astype(np.float32)
