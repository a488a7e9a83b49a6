"""Conformance cases of the preprocessing layers: image (Resizing, CenterCrop, RandomCrop, AutoContrast,
CLAHE, Equalization, Solarization and the augmentation layers, the identity at inference), categorical
(CategoryEncoding, Discretization, IntegerLookup, Hashing, HashedCrossing), audio (STFT and Mel
spectrograms), adaptive pooling, ReversibleEmbedding and Pipeline (its layers in sequence). Configs follow
tests/test_layers_preprocessing.py.

Where Keras itself is wrong the table keeps to what it computes right (kcompat computes the documented
result; tests/test_layers_preprocessing.py names each bug): RandomCrop returns its input at inference
instead of the documented centered crop, so its cases crop to the input's own size; Equalization cannot be
in a Keras model at all, so its cases are built "eager" (eager.py); RandomShear saves a symmetric factor
as a negative range it then refuses to read back, so its factors are ranges from 0.
"""
from __future__ import annotations

from .variant import Variant, X, call, sub, v

IMG, IMG_CF = (9, 13, 3), (3, 9, 13)
UINT8 = "uint8:0:256"
CF = "channels_first"
VOCAB = [3, 5, 7, 9, 12]  # with "int64:0:14" data: in-vocabulary, out-of-vocabulary and 0 (a mask token)


def images(*configs: dict) -> list[Variant]:
    """A layer on float images (each config), then on a uint8 image (the first config): dtypes differ."""
    cases = [v(IMG, "pixels", **config) for config in configs]
    return cases + [v(IMG, UINT8, **configs[0])]


def lookup(data: str = "int64:0:14", **config) -> Variant:
    return v((6,), data, vocabulary=VOCAB, **config)


IMAGE: dict[str, list[Variant]] = {
    "Resizing": [v(IMG, height=5, width=7), v(IMG, height=14, width=20, interpolation="nearest"),
                 v(IMG, height=9, width=4, interpolation="bicubic"), v(IMG, height=5, width=7, interpolation="area"),
                 v(IMG, height=14, width=20, interpolation="lanczos3"),
                 v(IMG, height=5, width=7, interpolation="lanczos5"),
                 v(IMG, height=4, width=6, interpolation="bilinear", antialias=True),
                 v(IMG, height=6, width=6, crop_to_aspect_ratio=True),
                 v(IMG, height=6, width=6, pad_to_aspect_ratio=True, fill_value=2.0),
                 v(IMG_CF, height=5, width=7, data_format=CF),
                 v(IMG, UINT8, height=5, width=7, interpolation="bicubic"),
                 v(IMG, UINT8, height=11, width=7, interpolation="nearest")],
    "CenterCrop": [v(IMG, height=5, width=7), v(IMG, height=12, width=7),
                   v(IMG_CF, height=4, width=4, data_format=CF), v(IMG, UINT8, height=5, width=8)],
    "RandomCrop": [v(IMG, height=9, width=13), v(IMG_CF, height=9, width=13, data_format=CF),
                   v(IMG, UINT8, height=9, width=13)],
    "AutoContrast": [v(IMG), v(IMG, value_range=(0, 1)), v(IMG, UINT8)],
    "ContrastLimitedAdaptiveHistogramEqualization": [
        v((20, 13, 3), "pixels"), v(IMG, UINT8, tile_grid_size=(3, 4)),
        v(IMG, "pixels", clip_limit=0, tile_grid_size=(2, 2)),
        v(IMG_CF, "pixels", data_format=CF, tile_grid_size=(2, 2))],
    "Equalization": [v(IMG, "pixels", build="eager"), v(IMG, "pixels", build="eager", bins=128),
                     v(IMG, UINT8, build="eager")],
    "Solarization": images({"addition_factor": 0.2, "threshold_factor": 0.2},
                           {"threshold_factor": 0.5, "value_range": (0, 255)}),
    "MaxNumBoundingBoxes": images({"max_number": 3}, {"max_number": 10}),
}

AUGMENTATION: dict[str, list[Variant]] = {  # the identity at inference (float32 for some, as Keras casts)
    "AugMix": images({}, {"num_chains": 2, "alpha": 0.5}),
    "CutMix": images({}, {"factor": 0.5}),
    "MixUp": images({}, {"alpha": 0.4}),
    "RandAugment": images({}, {"num_ops": 3, "factor": 0.7}),
    "RandomBrightness": images({"factor": 0.3}, {"factor": (-0.2, 0.5), "value_range": (0, 255)}),
    "RandomColorDegeneration": images({"factor": 0.3}, {"factor": (0.1, 0.6)}),
    "RandomColorJitter": images({"brightness_factor": 0.2},
                                {"contrast_factor": 0.3, "saturation_factor": 0.4}),
    "RandomContrast": images({"factor": 0.3}, {"factor": (0.1, 0.4)}),
    "RandomElasticTransform": images({"factor": 0.5}, {"factor": 1.0, "scale": 0.5}),
    "RandomErasing": images({"factor": 0.5}, {"factor": 1.0, "scale": (0.1, 0.3)}),
    "RandomFlip": images({}, {"mode": "vertical"}),
    "RandomGaussianBlur": images({"factor": 0.5}, {"factor": 1.0, "kernel_size": 5}),
    "RandomGrayscale": images({}, {"factor": 1.0}),
    "RandomHue": images({"factor": 0.2}, {"factor": (0.1, 0.3)}),
    "RandomInvert": images({}, {"factor": 0.8}),
    "RandomPerspective": images({}, {"factor": 0.5, "scale": 0.3}),
    "RandomPosterization": images({"factor": (1, 4)}, {"factor": (2, 6)}),
    "RandomRotation": images({"factor": 0.2}, {"factor": (-0.1, 0.3), "fill_mode": "constant"}),
    "RandomSaturation": images({"factor": 0.3}, {"factor": (0.2, 0.8)}),
    "RandomSharpness": images({"factor": 0.3}, {"factor": (0.1, 0.9)}),
    # a symmetric factor (x_factor=0.2) is saved as (-0.2, 0.2), which Keras refuses to read back
    "RandomShear": images({"x_factor": (0.0, 0.2)}, {"x_factor": (0.1, 0.3), "y_factor": (0.0, 0.2)}),
    "RandomTranslation": images({"height_factor": 0.2, "width_factor": 0.2},
                                {"height_factor": (-0.1, 0.3), "width_factor": 0.1, "fill_mode": "nearest"}),
    "RandomZoom": images({"height_factor": 0.2}, {"height_factor": (-0.3, 0.2), "width_factor": 0.1}),
}

CATEGORICAL: dict[str, list[Variant]] = {
    "CategoryEncoding": [v((6,), "int:10", num_tokens=8, output_mode="one_hot"),
                         v((1,), "int:8", num_tokens=8, output_mode="one_hot"),
                         v((3, 2), "int:5", num_tokens=5, output_mode="one_hot"),
                         v((6,), "int:10", num_tokens=8), v((6,), "int:8", num_tokens=8, output_mode="count")],
    "Discretization": [v((6,), bin_boundaries=[-1.0, 0.0, 0.5, 1.0], output_mode=mode)
                       for mode in ("int", "one_hot", "multi_hot", "count")],
    "IntegerLookup": [lookup(), lookup(mask_token=0), lookup(num_oov_indices=3), lookup(output_mode="one_hot"),
                      lookup(output_mode="multi_hot", mask_token=0), lookup(output_mode="count", num_oov_indices=2),
                      lookup(output_mode="tf_idf", idf_weights=[0.5, 1.0, 2.0, 3.0, 4.0]),
                      lookup(output_mode="multi_hot", max_tokens=10, pad_to_max_tokens=True),
                      lookup("int64:0:8", invert=True), lookup("int64:0:8", invert=True, mask_token=0)],
    "Hashing": [v((6,), "int64:wide", num_bins=7), v((6,), "int32:-1:3", num_bins=5, mask_value=0),
                v((6,), "int64:wide", num_bins=11, salt=[133, 7]),
                v((1,), "int64:wide", num_bins=4, salt=42, output_mode="one_hot"),
                v((6,), num_bins=6, output_mode="multi_hot"), v((6,), "int64:wide", num_bins=6, output_mode="count")],
    "HashedCrossing": [v([(1,), (1,)], "int64:wide", num_bins=9),
                       v([(1,), (1,)], "int64:wide", num_bins=5, output_mode="one_hot")],
}

AUDIO: dict[str, list[Variant]] = {  # window=None: Keras builds its window with scipy; the kernels are random
    "STFTSpectrogram": [v((100, 2), window=None, mode=mode, frame_length=16, frame_step=8)
                        for mode in ("log", "magnitude", "psd", "real", "imag", "angle", "stft")] + [
        v((100, 2), window=None, frame_length=10, frame_step=3, fft_length=16, padding="same"),
        v((100, 2), window=None, frame_length=16, expand_dims=True),
        v((2, 100), window=None, frame_length=16, data_format=CF)],
    "MelSpectrogram": [  # dB of float32 FFTs: ~5e-5 on values up to 35
        v((400,), fft_length=64, sequence_stride=16, sampling_rate=8000, num_mel_bins=20, tol=1e-4),
        v((400,), fft_length=64, sequence_stride=16, sampling_rate=8000, sequence_length=40, window="hamming",
          num_mel_bins=10, power_to_db=False, mag_exp=1.0, max_freq=3000, tol=1e-4),
        v((400,), fft_length=64, sequence_stride=16, sampling_rate=8000, num_mel_bins=8, top_db=20.0, ref_power=2.0,
          tol=1e-4)],
}

OTHER: dict[str, list[Variant]] = {
    **{f"Adaptive{kind}Pooling1D": [v((7, 2), output_size=3), v((4, 2), output_size=9)] for kind in ("Average", "Max")},
    **{f"Adaptive{kind}Pooling2D": [v((7, 5, 2), output_size=(3, 2)), v((4, 6, 1), output_size=(5, 8)),
                                    v((2, 7, 5), output_size=3, data_format=CF)] for kind in ("Average", "Max")},
    **{f"Adaptive{kind}Pooling3D": [v((5, 4, 3, 2), output_size=(2, 3, 2)), v((4, 4, 4, 1), output_size=2)]
       for kind in ("Average", "Max")},
    "ReversibleEmbedding": [v((5,), "int:11", input_dim=11, output_dim=4),
                            v((5, 4), call=call(X, reverse=True), input_dim=11, output_dim=4),
                            v((5, 4), call=call(X, reverse=True), input_dim=11, output_dim=4, tie_weights=False,
                              logit_soft_cap=2.0),
                            v((5,), "int:11", input_dim=11, output_dim=4, tie_weights=False)],
    # a BatchNormalization before a Dense: its moving statistics come after the Dense's kernel in Keras's order
    "Pipeline": [v((4,), layers=[sub("BatchNormalization"), sub("Dense", units=3), sub("GaussianNoise", stddev=0.3),
                                 sub("Rescaling", scale=0.5), sub("Dense", units=2)]),
                 v(IMG, "pixels", layers=[sub("Rescaling", scale=1 / 255.0), sub("RandomFlip"),
                                          sub("CenterCrop", height=5, width=7)])],
}
