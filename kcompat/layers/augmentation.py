"""Random augmentation layers: the identity at inference (``training=False``), as Keras 3 computes them.

References: keras/src/layers/preprocessing/image_preprocessing/*.py: each ``transform_images`` returns
its input when not training; some cast it to float32 first (``casts``), the others keep an integer
image's dtype. Equalization also returns its input at inference (Keras cannot put it in a Functional
model: its ``compute_output_spec`` returns the input tensor itself, a cycle). RandomCrop is not here: at
inference it crops and resizes (image_preprocessing.py).
"""
from __future__ import annotations

import numpy as np

from .base import register
from .regularization import InferenceIdentity


class _Augmentation(InferenceIdentity):
    """Identity at inference; ``casts``: the result is float32 even for an integer image."""

    rate_key = None
    casts = True

    def forward(self, x):
        return x.astype(np.float32, copy=False) if self.casts else x


AUGMENTATIONS = {  # Keras class -> (what it does in training only, casts an integer image to float32)
    "AugMix": ("mixes chains of augmentations", True),
    "CutMix": ("pastes patches between images", True),
    "MixUp": ("blends pairs of images", False),
    "RandAugment": ("applies random augmentations", True),
    "RandomBrightness": ("shifts brightness", False),
    "RandomColorDegeneration": ("blends towards grayscale", False),
    "RandomColorJitter": ("jitters brightness, contrast, saturation and hue", False),
    "RandomContrast": ("scales contrast", False),
    "RandomElasticTransform": ("warps elastically", True),
    "RandomErasing": ("erases rectangles", True),
    "RandomFlip": ("flips", True),
    "RandomGaussianBlur": ("blurs", True),
    "RandomGrayscale": ("turns images gray", False),
    "RandomHue": ("shifts hue", False),
    "RandomInvert": ("inverts", False),
    "RandomPerspective": ("warps the perspective", True),
    "RandomPosterization": ("reduces bits per channel", False),
    "RandomRotation": ("rotates", True),
    "RandomSaturation": ("scales saturation", False),
    "RandomSharpness": ("sharpens or blurs", True),
    "RandomShear": ("shears", True),
    "RandomTranslation": ("translates", True),
    "RandomZoom": ("zooms", True),
    "Solarization": ("inverts pixels above a random threshold", True),
    "Equalization": ("equalizes histograms", False),
    "MaxNumBoundingBoxes": ("pads / truncates bounding boxes (images pass through always)", False),
}


def _augmentation(name: str, what: str, casts: bool) -> type:
    """The identity-at-inference layer class for one augmentation."""
    return type(name, (_Augmentation,), {"what": what, "casts": casts,
                                         "__doc__": f"Identity at inference (in training it {what})."})


for _name, (_what, _casts) in AUGMENTATIONS.items():
    register(_name)(_augmentation(_name, _what, _casts))
