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


@register("AugMix")
class AugMix(_Augmentation):
    what = "mixes chains of augmentations"


@register("CutMix")
class CutMix(_Augmentation):
    what = "pastes patches between images"


@register("MixUp")
class MixUp(_Augmentation):
    what, casts = "blends pairs of images", False


@register("RandAugment")
class RandAugment(_Augmentation):
    what = "applies random augmentations"


@register("RandomBrightness")
class RandomBrightness(_Augmentation):
    what, casts = "shifts brightness", False


@register("RandomColorDegeneration")
class RandomColorDegeneration(_Augmentation):
    what, casts = "blends towards grayscale", False


@register("RandomColorJitter")
class RandomColorJitter(_Augmentation):
    what, casts = "jitters brightness, contrast, saturation and hue", False


@register("RandomContrast")
class RandomContrast(_Augmentation):
    what, casts = "scales contrast", False


@register("RandomElasticTransform")
class RandomElasticTransform(_Augmentation):
    what = "warps elastically"


@register("RandomErasing")
class RandomErasing(_Augmentation):
    what = "erases rectangles"


@register("RandomFlip")
class RandomFlip(_Augmentation):
    what = "flips"


@register("RandomGaussianBlur")
class RandomGaussianBlur(_Augmentation):
    what = "blurs"


@register("RandomGrayscale")
class RandomGrayscale(_Augmentation):
    what, casts = "turns images gray", False


@register("RandomHue")
class RandomHue(_Augmentation):
    what, casts = "shifts hue", False


@register("RandomInvert")
class RandomInvert(_Augmentation):
    what, casts = "inverts", False


@register("RandomPerspective")
class RandomPerspective(_Augmentation):
    what = "warps the perspective"


@register("RandomPosterization")
class RandomPosterization(_Augmentation):
    what, casts = "reduces bits per channel", False


@register("RandomRotation")
class RandomRotation(_Augmentation):
    what = "rotates"


@register("RandomSaturation")
class RandomSaturation(_Augmentation):
    what, casts = "scales saturation", False


@register("RandomSharpness")
class RandomSharpness(_Augmentation):
    what = "sharpens or blurs"


@register("RandomShear")
class RandomShear(_Augmentation):
    what = "shears"


@register("RandomTranslation")
class RandomTranslation(_Augmentation):
    what = "translates"


@register("RandomZoom")
class RandomZoom(_Augmentation):
    what = "zooms"


@register("Solarization")
class Solarization(_Augmentation):
    what = "inverts pixels above a random threshold"


@register("Equalization")
class Equalization(_Augmentation):
    what, casts = "equalizes histograms", False


@register("MaxNumBoundingBoxes")
class MaxNumBoundingBoxes(_Augmentation):
    what, casts = "pads / truncates bounding boxes (images pass through always)", False
