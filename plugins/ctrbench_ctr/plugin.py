"""Registers the built-in CTR backbones. Config defaults are each factory's keyword defaults.

The ``q`` metadata says what the backbone's final hidden state ``q = interact(E)`` is, since ClickPrompt's
prompt generator reads it and its meaning differs between models.
"""

from __future__ import annotations

from ctrbench import hookimpl
from ctrbench.hookspecs import Register
from ctrbench_ctr.dcnv2 import DCNv2
from ctrbench_ctr.dnn import DNN
from ctrbench_ctr.fm import FM
from ctrbench_ctr.lr import LR


@hookimpl
def ctrbench_register_ctr_backbones(register: Register) -> None:
    register("lr", LR, summary="Logistic regression on one-hot field features (first-order weights only)",
             paper="Richardson et al., Predicting Clicks: Estimating the Click-Through Rate for New Ads, WWW 2007",
             q="the per-field first-order weights w_f[x_f], [B, F(+k)]; logit = sum(q) + bias")
    register("fm", FM, summary="Factorization machine: first-order weights + all pairwise inner products",
             paper="Rendle, Factorization Machines, ICDM 2010",
             q="the pairwise term sum_{i<j} e_i * e_j before the sum over d, [B, embed_dim]; "
               "logit = sum(q) + bias + first-order weights")
    register("dnn", DNN, summary="MLP over concatenated field embeddings",
             paper="Covington et al., Deep Neural Networks for YouTube Recommendations, RecSys 2016",
             q="the last hidden layer of the MLP, [B, hidden_units[-1]]")
    register("dcnv2", DCNv2, summary="Deep & Cross Network V2: full-rank or mixture-of-low-rank cross network + MLP",
             paper="Wang et al., DCN V2: Improved Deep & Cross Network and Practical Lessons for Web-scale "
                   "Learning to Rank Systems, WWW 2021",
             q="parallel: [cross_out; dnn_out], [B, F*d + dnn_hidden_units[-1]]; stacked: dnn(cross_out), "
               "[B, dnn_hidden_units[-1]]; crossnet_only: cross_out, [B, F*d] (F counts extra fields)")
