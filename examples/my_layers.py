"""My own NumPy Dense, Flatten and Activation, checked layer by layer by `kcompat verify --candidate`."""
import numpy as np


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


ACTIVATIONS = {"linear": lambda x: x, "relu": lambda x: np.maximum(x, 0), "tanh": np.tanh,
               "sigmoid": lambda x: 1 / (1 + np.exp(-x)), "softmax": softmax}


def run(layer, weights, inputs, order="C"):
    config, x = layer["config"], inputs[0]
    if layer["class_name"] == "Dense":
        y = x @ weights[0]  # kernel (in, out), on the last axis
        if config["use_bias"]:
            y = y + weights[1]
        return ACTIVATIONS[config["activation"]](y)
    if layer["class_name"] == "Activation":
        return ACTIVATIONS[config["activation"]](x)
    if layer["class_name"] == "Flatten":
        if config.get("data_format") == "channels_first":
            x = np.moveaxis(x, 1, -1)  # Keras flattens channels last
        return x.reshape(len(x), -1, order=order)
    raise NotImplementedError(layer["class_name"])


def run_fortran_flatten(layer, weights, inputs):
    """The same with a planted bug: Flatten in column-major order, as a port from MATLAB might do."""
    return run(layer, weights, inputs, order="F")
