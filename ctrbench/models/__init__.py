"""CTR backbone interface and the layers shared by the built-in models."""

from ctrbench.models.base import Batch, CTRBackbone, FieldEmbedding

__all__ = ["Batch", "CTRBackbone", "FieldEmbedding"]
