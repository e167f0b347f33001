"""FGCNN (Liu et al., WWW 2019, "Feature Generation by Convolutional Neural Network for Click-Through Rate
Prediction"), Fig. 2: a CNN generates new features, an IPNN classifies raw + new features.

    E' = FeatureGeneration(E_fg)                     conv → pool → recombine, N_new new features of size d
    X  = [E; E']                                       the augmented feature set, F + N_new features
    q  = MLP([flatten(X); (<x_i, x_j>)_{i<j}])         Deep Classifier: IPNN's inner products + MLP
    logit = wᵀ q + b

E_fg is a second embedding table (FuxiCTR's default ``share_embedding=False``): then ``embed`` returns
[E; E_fg], F + F vectors, and ``num_inputs`` counts both; extra fields (appended after them) join both
paths. ``share_embedding=True`` generates from E itself. Defaults are FuxiCTR's constructor defaults for
the generator (channels 14/16/18/20, kernel height 7, pooling 2, 2 recombined channels, tanh, BatchNorm) and
the ``(400, 400, 400)`` ReLU tower of ``dnn`` for the classifier (FuxiCTR: [4096, 2048, 1024, 512]).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ctrbench.data.types import Field
from ctrbench.models.base import Batch, CTRBackbone, FieldEmbedding, backbone
from ctrbench.models.interaction import FeatureGeneration
from ctrbench.models.layers import MLP, InnerProductLayer


@backbone(
    "fgcnn",
    summary='FGCNN: CNN-generated features added to the raw ones, then an IPNN (inner products + MLP)',
    paper=('Liu et al., Feature Generation by Convolutional Neural Network for Click-Through Rate Prediction, '
           'WWW 2019'),
    q='the last hidden layer of the classifier MLP over [raw and generated features; their inner products], '
      '[B, dnn_hidden_units[-1]]',
)
class FGCNN(CTRBackbone):
    """Feature Generation by CNN + IPNN classifier.

    Args:
        fields: the dataset's fields; the categorical ones are embedded.
        embed_dim: embedding size d (raw and generated features).
        num_extra_fields: k extra field embeddings the caller appends to E; they are raw features and
            convolution rows.
        share_embedding: generate features from the classifier's embeddings instead of a second table.
        channels: convolution channels c_i per generation layer.
        kernel_heights: kernel heights k_i (odd keeps the height: 'same' padding).
        pooling_sizes: max-pooling heights p_i.
        recombined_channels: new features r_i per pooled row of layer i.
        conv_activation: activation of the convolutions and recombination layers.
        conv_batch_norm: BatchNorm2d after each convolution.
        dnn_hidden_units: widths of the classifier MLP; the last one is ``hidden_dim``.
        activation: classifier hidden activation.
        dropout: dropout after each classifier hidden layer.
        batch_norm: BatchNorm1d after each classifier hidden Linear.
    """

    def __init__(self, fields: Sequence[Field], *, embed_dim: int = 16, num_extra_fields: int = 0,
                 share_embedding: bool = False, channels: Sequence[int] = (14, 16, 18, 20),
                 kernel_heights: Sequence[int] = (7, 7, 7, 7), pooling_sizes: Sequence[int] = (2, 2, 2, 2),
                 recombined_channels: Sequence[int] = (2, 2, 2, 2), conv_activation: str = "tanh",
                 conv_batch_norm: bool = True, dnn_hidden_units: Sequence[int] = (400, 400, 400),
                 activation: str = "relu", dropout: float = 0.0, batch_norm: bool = False) -> None:
        super().__init__(fields, embed_dim, num_extra_fields)
        self.share_embedding = share_embedding
        self.fg_embedding = None if share_embedding else FieldEmbedding(self.fields, embed_dim)
        num_raw = len(self.fields) + num_extra_fields
        self.generator = FeatureGeneration(num_raw, embed_dim, channels, kernel_heights, pooling_sizes,
                                           recombined_channels, activation=conv_activation,
                                           batch_norm=conv_batch_norm)
        total = num_raw + self.generator.num_new_features
        self.inner_product = InnerProductLayer(total)
        self.dnn = MLP(total * embed_dim + self.inner_product.num_pairs, dnn_hidden_units, dropout=dropout,
                       batch_norm=batch_norm, activation=activation)
        self.build_head(self.dnn.output_dim)

    @property
    def num_inputs(self) -> int:
        return len(self.fields) * (1 if self.share_embedding else 2) + self.num_extra_fields

    def embed(self, batch: Batch) -> torch.Tensor:
        """float[B, F, d], or [B, 2F, d] = [E; E_fg] with a separate generation table."""
        E = self.embedding(batch.x)
        return E if self.fg_embedding is None else torch.cat([E, self.fg_embedding(batch.x)], dim=1)

    def interact(self, E: torch.Tensor) -> torch.Tensor:
        """float[B, num_inputs, d] → q: float[B, dnn_hidden_units[-1]]."""
        F = len(self.fields)
        raw, fg = (E, E) if self.fg_embedding is None else (torch.cat([E[:, :F], E[:, 2 * F:]], dim=1), E[:, F:])
        X = torch.cat([raw, self.generator(fg)], dim=1)  # [E; E']: [B, F(+k) + N_new, d]
        return self.dnn(torch.cat([X.flatten(start_dim=1), self.inner_product(X)], dim=-1))  # IPNN
