"""Registers the built-in datasets. Config keys are each class's constructor arguments.

The classes are registered as lazy factories (`ctrbench.lazy`): their modules (pandas, and the text layer) are
imported when a dataset is built, not when `ctrbench list` or `ctrbench validate` loads the plugins."""

from __future__ import annotations

from functools import partial
from typing import Any

from ctrbench import hookimpl
from ctrbench.data.configtypes import typed
from ctrbench.hookspecs import Register
from ctrbench.lazy import lazy
from ctrbench.protocols import IN_MEMORY, Provides

Amazon = lazy("ctrbench_datasets.amazon:Amazon")
BookCrossing = lazy("ctrbench_datasets.bookcrossing:BookCrossing")
Criteo = lazy("ctrbench_datasets.criteo:Criteo")
GoodReads = lazy("ctrbench_datasets.goodreads:GoodReads")
MovieLens100K = lazy("ctrbench_datasets.movielens:MovieLens100K")
MovieLens1M = lazy("ctrbench_datasets.movielens1m:MovieLens1M")
Synthetic = lazy("ctrbench_datasets.synthetic:Synthetic")

MOVIELENS = "Harper & Konstan, The MovieLens Datasets, ACM TiiS 2015"
AMAZON = ("Ni, Li & McAuley, Justifying Recommendations using Distantly-Labeled Reviews and Fine-Grained Aspects, "
          "EMNLP 2019")
AMAZON_PREP = ("rating >= 4 positive, latest review per (user, item), 5-core to a fixed point, title/brand/category, "
               "global temporal 8:1:1 split; files behind a request form")
# What the data holds beyond ID features (checked against methods' needs by `ctrbench validate`).
HISTORY_AND_TEXT = Provides(history="history_length", item_text=True)
BY_HAND = "by hand (request form)"


@hookimpl
def ctrbench_register_datasets(register: Register) -> None:
    register = _typed_register(register)
    register("movielens-100k", MovieLens100K,
             summary="MovieLens-100K ratings as CTR (rating 3 dropped, label rating >= 4, 9 user/item fields, "
                     "global temporal 8:1:1 split); read from GroupLens or the recbole==1.2.1 wheel",
             paper=MOVIELENS, provides=HISTORY_AND_TEXT,
             source="GroupLens download, else the recbole==1.2.1 wheel")
    register("movielens-1m", MovieLens1M,
             summary="MovieLens-1M as ClickPrompt prepares it (rating 3 dropped, label rating >= 4, 8 user/movie "
                     "fields, global temporal 8:1:1 split); downloaded from GroupLens, pinned by sha256",
             paper=MOVIELENS, provides=HISTORY_AND_TEXT, source="GroupLens download (sha256-pinned)")
    register("bookcrossing", BookCrossing,
             summary="Book-Crossing explicit ratings as ClickPrompt prepares them (label rating >= 5, 8 user/book "
                     "fields, seeded random 8:1:1 split: the data has no timestamps)",
             paper="Ziegler et al., Improving Recommendation Lists Through Topic Diversification, WWW 2005",
             provides=Provides(history=False, item_text=True),
             source="Freiburg download (no checksum published) or a copy you have")
    register("amazon-toys", partial(Amazon, category="Toys_and_Games"),
             summary=f"Amazon 2018 Toys_and_Games: {AMAZON_PREP}", paper=AMAZON, provides=HISTORY_AND_TEXT,
             source=BY_HAND)
    register("amazon-sports", partial(Amazon, category="Sports_and_Outdoors"),
             summary=f"Amazon 2018 Sports_and_Outdoors: {AMAZON_PREP}", paper=AMAZON, provides=HISTORY_AND_TEXT,
             source=BY_HAND)
    register("amazon", Amazon,
             summary=f"Any Amazon 2018 category (config key `category`, e.g. Books): {AMAZON_PREP}", paper=AMAZON,
             provides=HISTORY_AND_TEXT, source=BY_HAND, quick_config={"category": "Books"})
    register("goodreads", GoodReads,
             summary="GoodReads ratings of one genre (config key `genre`): rating >= 4 positive, unrated shelves "
                     "dropped, 10-core to a fixed point, global temporal 8:1:1 split; files behind a request form",
             paper="Wan & McAuley, Item Recommendation on Monotonic Behavior Chains, RecSys 2018",
             provides=HISTORY_AND_TEXT, source=BY_HAND, quick_config={"genre": "poetry"})
    register("criteo", Criteo,
             summary="Criteo Kaggle display ads (45M rows): BARS/FuxiCTR binning of I1-I13, min-count 10 for every "
                     "feature, 8:1:1 by row order; prepared out of core in two streaming passes",
             paper="Criteo Labs, Display Advertising Challenge, Kaggle 2014",
             provides=Provides(history=False, item_text=False), source="by hand (licence acceptance)")
    register("synthetic", Synthetic,
             summary="Zipf-distributed categorical fields with a planted first-order + user x item interaction "
                     "signal (FM/DCN can beat LR); memory-mapped generation for millions of rows",
             paper="", provides=Provides(history="history_length", item_text=False), source=IN_MEMORY,
             quick_config={"num_samples": 400, "num_fields": 4, "vocab_size": 20, "history_length": 3})


def _typed_register(register: Register) -> Register:
    """Register each dataset behind ``typed``: a config value of the wrong type (``num_samples: abc``) is a
    DataError naming the dataset, the key and the expected type, not a TypeError from deep inside."""

    def wrapped(name: str, factory: Any, **meta: Any) -> None:
        register(name, typed(factory, name), **meta)

    return wrapped  # type: ignore[return-value]
