"""kcompat's version (a leaf module: writers stamp it into files without importing the package root)."""
__version__ = "0.1.0"
