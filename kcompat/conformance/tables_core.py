"""Conformance cases of the core layers: Dense, activations, convolutions, merging, normalization, pooling,
reshaping, regularization, Embedding, Rescaling / Normalization, SpectralNormalization (the wrapped layer at
inference) (cases.py gathers every table).

Keras never sees a channels_first convolution whose last axis equals its filter count: Keras 3 on
TensorFlow adds the bias on the wrong axis there (README, "Keras behaviour kcompat names instead of copying").
"""
from __future__ import annotations

from .variant import Variant, sub, v

CF = "channels_first"

CORE: dict[str, list[Variant]] = {
    # core
    "Dense": [v((5,), units=4), v((3, 4), units=3, activation="relu", use_bias=False),
              v((2, 3, 4), units=5, activation="gelu"), v((6,), units=3, activation="softmax")],
    "Activation": [v((6,), "wide", activation="relu"), v((3, 4), activation="gelu"), v((6,), activation="tanh"),
                   v((6,), "wide", activation="hard_sigmoid"), v((2, 6), activation="softmax"),
                   v((6,), activation="selu"), v((6,), activation="swish"), v((6,), activation="mish")],
    "Dropout": [v((6,), rate=0.5), v((3, 4), rate=0.2, noise_shape=None)],
    "Flatten": [v((3, 4)), v((2, 3, 4), data_format=CF), v((2, 2, 3, 2)), v((2, 3, 4))],
    # activation layers
    "ELU": [v((6,)), v((3, 4), alpha=0.5)],
    "LeakyReLU": [v((6,)), v((3, 4), negative_slope=0.05)],
    "PReLU": [v((3, 4)), v((3, 3, 4), shared_axes=[1, 2])],
    "ReLU": [v((6,), "wide", max_value=6.0), v((6,), negative_slope=0.1, threshold=0.5),
             v((6,), "wide", max_value=1.0, negative_slope=0.3, threshold=0.25)],
    "Softmax": [v((3, 5)), v((3, 5), axis=1), v((3, 5), axis=[1, 2])],
    # convolution
    "Conv1D": [v((10, 3), filters=4, kernel_size=3), v((11, 3), filters=4, kernel_size=3, strides=2, padding="same"),
               v((12, 2), filters=4, kernel_size=3, padding="causal", dilation_rate=2, activation="relu"),
               v((8, 6), filters=6, kernel_size=3, groups=3, use_bias=False)],
    "Conv2D": [v((9, 9, 3), filters=5, kernel_size=3),
               v((10, 11, 2), filters=4, kernel_size=(3, 2), strides=(2, 3), padding="same"),
               v((4, 8, 8), filters=4, kernel_size=3, groups=2, data_format=CF),
               v((9, 9, 3), filters=4, kernel_size=3, dilation_rate=(2, 1), padding="same", activation="tanh")],
    "Conv3D": [v((5, 5, 5, 2), filters=3, kernel_size=2),
               v((5, 6, 7, 2), filters=2, kernel_size=3, strides=(1, 2, 2), padding="same"),
               v((2, 6, 6, 6), filters=2, kernel_size=2, dilation_rate=2, data_format=CF)],
    "Conv1DTranspose": [v((6, 3), filters=4, kernel_size=3),
                        v((6, 3), filters=4, kernel_size=3, strides=2, padding="same"),
                        v((5, 2), filters=3, kernel_size=3, strides=3, output_padding=2)],
    "Conv2DTranspose": [v((5, 5, 3), filters=4, kernel_size=3, strides=2),
                        v((5, 4, 2), filters=3, kernel_size=3, strides=2, padding="same", output_padding=1),
                        v((3, 5, 6), filters=4, kernel_size=3, strides=(1, 2), padding="same", data_format=CF)],
    "Conv3DTranspose": [v((3, 3, 3, 2), filters=2, kernel_size=2, strides=2),
                        v((3, 3, 3, 2), filters=2, kernel_size=3, strides=2, padding="same", output_padding=1)],
    "DepthwiseConv1D": [v((10, 3), kernel_size=3),
                        v((11, 3), kernel_size=3, strides=2, padding="same", depth_multiplier=2)],
    "DepthwiseConv2D": [v((8, 8, 3), kernel_size=3),
                        v((7, 7, 2), kernel_size=3, padding="same", depth_multiplier=3, activation="relu"),
                        v((3, 8, 9), kernel_size=(2, 3), strides=(2, 1), data_format=CF, use_bias=False)],
    "SeparableConv1D": [v((10, 3), filters=4, kernel_size=3),
                        v((11, 3), filters=5, kernel_size=3, strides=2, padding="same", depth_multiplier=2)],
    "SeparableConv2D": [v((8, 8, 3), filters=4, kernel_size=3),
                        v((9, 9, 3), filters=6, kernel_size=3, strides=2, padding="same", depth_multiplier=2)],
    # embedding
    "Embedding": [v((6,), "int:10", input_dim=10, output_dim=4), v((2, 3), "int:7", input_dim=7, output_dim=3)],
    # merging (several inputs)
    "Add": [v([(4,), (4,)]), v([(2, 3), (2, 3), (2, 3)]), v([(4, 3), (1, 3)])],
    "Subtract": [v([(5,), (5,)])],
    "Multiply": [v([(4,), (4,), (4,)]), v([(2, 3), (2, 3)])],
    "Average": [v([(2, 3), (2, 3), (2, 3)])],
    "Maximum": [v([(5,), (5,)])],
    "Minimum": [v([(5,), (5,)])],
    "Concatenate": [v([(3, 2), (3, 4)]), v([(2, 3), (4, 3), (1, 3)], axis=1)],
    "Dot": [v([(5,), (5,)], axes=1), v([(3, 4), (5, 4)], axes=(2, 2)), v([(4, 3), (4, 2)], axes=(1, 1), normalize=True)],
    # normalization
    "BatchNormalization": [v((4, 5)), v((3, 4, 4), axis=1, epsilon=1e-5), v((6,), center=False),
                           v((2, 2, 5), center=False, scale=False)],
    "LayerNormalization": [v((4, 6)), v((3, 4, 2), axis=[1, 2], epsilon=1e-6), v((4, 5), rms_scaling=True)],
    "GroupNormalization": [v((4, 4, 6), groups=2), v((5, 3), groups=-1, epsilon=1e-5), v((4, 3, 3), groups=1, axis=1)],
    "UnitNormalization": [v((4, 5)), v((3, 4), axis=[1, 2])],
    "RMSNormalization": [v((4, 5)), v((3, 4), axis=[-2, -1], epsilon=1e-3)],
    "SpectralNormalization": [v((5,), layer=sub("Dense", units=3)),
                              v((6, 6, 2), layer=sub("Conv2D", filters=2, kernel_size=2), power_iterations=2),
                              v((4, 3), layer=sub("EinsumDense", equation="abc,cd->abd", output_shape=(None, 2)))],
    # pooling
    "MaxPooling1D": [v((9, 3)), v((7, 2), pool_size=3, strides=1, padding="same")],
    "MaxPooling2D": [v((7, 7, 3), pool_size=(2, 2)), v((8, 9, 2), pool_size=3, strides=2, padding="same"),
                     v((3, 5, 5), pool_size=2, padding="same", data_format=CF)],
    "MaxPooling3D": [v((5, 5, 5, 2), pool_size=2), v((2, 3, 4, 5), pool_size=2, strides=1, padding="same", data_format=CF)],
    "AveragePooling1D": [v((8, 2), pool_size=3, strides=2, padding="same"), v((3, 8), pool_size=2, data_format=CF)],
    "AveragePooling2D": [v((7, 8, 2), pool_size=3, strides=(1, 2)), v((8, 9, 2), pool_size=3, strides=2, padding="same")],
    "AveragePooling3D": [v((5, 6, 4, 2), pool_size=3, strides=2, padding="same"),
                         v((2, 4, 4, 4), pool_size=(2, 1, 2), data_format=CF)],
    "GlobalMaxPooling1D": [v((7, 3)), v((3, 7), keepdims=True, data_format=CF)],
    "GlobalMaxPooling2D": [v((5, 6, 3)), v((3, 5, 6), keepdims=True, data_format=CF)],
    "GlobalMaxPooling3D": [v((3, 4, 5, 2)), v((2, 3, 4, 5), data_format=CF)],
    "GlobalAveragePooling1D": [v((7, 3)), v((7, 3), keepdims=True)],
    "GlobalAveragePooling2D": [v((5, 6, 3)), v((3, 5, 6), data_format=CF)],
    "GlobalAveragePooling3D": [v((3, 4, 5, 2), keepdims=True), v((2, 3, 4, 5), keepdims=True, data_format=CF)],
    # preprocessing
    "Rescaling": [v((4, 4, 3), scale=1 / 255.0), v((5,), scale=2.0, offset=-1.0)],
    "Normalization": [v((2, 3), mean=[1.0, 2.0, 3.0], variance=[1.0, 4.0, 0.25]), v((4, 3)),
                      v((2, 3), mean=2.0, variance=9.0, invert=True)],
    # regularization (identity at inference)
    "ActivityRegularization": [v((4,), l1=0.1, l2=0.01)],
    "AlphaDropout": [v((4,), rate=0.2)],
    "GaussianDropout": [v((4,), rate=0.4)],
    "GaussianNoise": [v((4,), stddev=0.5)],
    "Identity": [v((2, 3))],
    "Masking": [v((5, 3), "masked", mask_value=0.0)],
    "SpatialDropout1D": [v((5, 3), rate=0.5)],
    "SpatialDropout2D": [v((2, 3, 3), rate=0.3, data_format=CF)],
    "SpatialDropout3D": [v((2, 2, 2, 3), rate=0.3)],
    # reshaping
    "Reshape": [v((3, 4), target_shape=(-1, 2)), v((12,), target_shape=(2, 3, 2))],
    "Permute": [v((3, 4), dims=(2, 1)), v((2, 3, 4), dims=(3, 1, 2))],
    "RepeatVector": [v((4,), n=3)],
    "Cropping1D": [v((6, 3), cropping=(1, 2)), v((6, 3), cropping=(2, 0))],
    "Cropping2D": [v((5, 6, 2), cropping=((1, 0), (2, 1))), v((2, 5, 5), cropping=1, data_format=CF)],
    "Cropping3D": [v((4, 4, 4, 2), cropping=((1, 1), (0, 1), (2, 0))), v((2, 4, 4, 4), cropping=1, data_format=CF)],
    "ZeroPadding1D": [v((4, 3), padding=2), v((4, 3), padding=(1, 3))],
    "ZeroPadding2D": [v((3, 4, 2), padding=((1, 2), (0, 3))), v((2, 3, 3), padding=(2, 1), data_format=CF)],
    "ZeroPadding3D": [v((2, 3, 2, 2), padding=((1, 0), (0, 2), (1, 1))), v((2, 2, 2, 2), padding=1, data_format=CF)],
    "UpSampling1D": [v((4, 2), size=3)],
    "UpSampling2D": [v((3, 3, 2), size=(2, 3)), v((4, 5, 2), size=2, interpolation="bilinear"),
                     v((2, 3, 3), size=2, data_format=CF)],
    "UpSampling3D": [v((2, 2, 2, 2), size=(1, 2, 3)), v((2, 2, 2, 2), size=2, data_format=CF)],
}

