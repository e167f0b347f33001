"""ctrbench: a benchmark suite for CTR prediction where ID-based CTR models meet pretrained language models."""

from ctrbench.hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["hookimpl", "__version__"]
