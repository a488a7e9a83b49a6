"""Errors kcompat raises on bad input; the CLI prints them as one line and exits 2."""


class KcompatError(Exception):
    """Base class: a user-facing problem with a file, a layer or an argument."""


class FormatError(KcompatError):
    """A file is missing, empty, truncated, corrupt or not the format it claims."""


class UnsupportedError(KcompatError):
    """A layer, option or op kcompat refuses or does not implement (Lambda, pickles...)."""


class ShapeError(KcompatError):
    """A weight or an input does not have the shape the model expects."""


class ConfigError(KcompatError):
    """A layer config holds an impossible value (e.g. negative units)."""
