"""The conformance maker table: for every layer class kcompat implements, and every Keras 3 op class it
runs, a few varied configs.

``CASES`` (layer class -> variants) and ``OPS`` (op class -> variants) gather the tables (tables_*.py);
a ``Variant`` (variant.py) is data: how the case's model is built, called and fed, and ``build.py``
makes it in real Keras. Variants are picked with the conformance tables of tests/ in mind
(test_layers_*.py, recurrent_rows.py, test_ops.py) but are kept here, as data, so kcompat never imports
tests/. ``CASES`` must name every class in the layer registry and ``OPS`` every class in the op registry
(tests/test_conformance_suite.py checks). On the command line an op class is ``ops.<Class>``
(``--layers ops.Mean,Dense``), and so is its case folder (``ops.Mean_00``).
"""
from __future__ import annotations

from .tables_core import CORE
from .tables_ops import OPS
from .tables_preprocessing import AUDIO, AUGMENTATION, CATEGORICAL, IMAGE, OTHER
from .tables_sequence import APPLICATIONS, ATTENTION, RECURRENT
from .variant import Variant, v  # noqa: F401  (the public names of a case)

OP_PREFIX = "ops."  # "ops.Mean": the Keras 3 op class Mean

CASES: dict[str, list[Variant]] = {**CORE, **RECURRENT, **ATTENTION, **APPLICATIONS, **IMAGE, **AUGMENTATION,
                                   **CATEGORICAL, **AUDIO, **OTHER}


def suite_classes() -> list[str]:
    """Every class of the suite as ``--layers`` names it: the layer classes, then ``ops.<Class>``."""
    return list(CASES) + [OP_PREFIX + name for name in OPS]


def variants_of(cls: str) -> list[Variant] | None:
    """The variants of suite class ``cls`` (``Dense``, ``ops.Mean``), None when there are none."""
    if cls.startswith(OP_PREFIX):
        return OPS.get(cls[len(OP_PREFIX):])
    return CASES.get(cls)


def select(layers: list[str] | None = None, cases: int | None = None) -> list[tuple[str, int, Variant]]:
    """(suite class, index, variant) for the chosen classes (None: all), at most ``cases`` per class."""
    from ..errors import KcompatError
    chosen = suite_classes() if layers is None else layers
    unknown = [c for c in chosen if variants_of(c) is None]
    if unknown:
        raise KcompatError(f"--layers: no conformance cases for {unknown}; known classes: "
                           f"{', '.join(sorted(CASES))}, and the Keras 3 ops as ops.<Class> "
                           f"({', '.join(OP_PREFIX + n for n in sorted(OPS)[:3])}, ...)")
    if cases is not None and (isinstance(cases, bool) or cases < 1):
        raise KcompatError(f"--cases must be a positive integer. Received: cases={cases!r}")
    return [(c, i, variant) for c in chosen for i, variant in enumerate(variants_of(c)[:cases])]
