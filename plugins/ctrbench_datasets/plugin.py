"""Registers the built-in datasets. Config keys are each class's constructor arguments."""

from __future__ import annotations

from ctrbench import hookimpl
from ctrbench.hookspecs import Register
from ctrbench_datasets.movielens import MovieLens100K
from ctrbench_datasets.synthetic import Synthetic


@hookimpl
def ctrbench_register_datasets(register: Register) -> None:
    register("movielens-100k", MovieLens100K,
             summary="MovieLens-100K ratings as CTR (rating 3 dropped, label rating >= 4, 9 user/item fields, "
                     "global temporal 8:1:1 split); read from GroupLens or the recbole==1.2.1 wheel",
             paper="Harper & Konstan, The MovieLens Datasets, ACM TiiS 2015")
    register("synthetic", Synthetic,
             summary="Zipf-distributed categorical fields with a planted first-order + user x item interaction "
                     "signal (FM/DCN can beat LR); memory-mapped generation for millions of rows",
             paper="")
