"""Built-in datasets, registered through the ``ctrbench`` entry point: MovieLens-100K and -1M, Book-Crossing,
Amazon 2018 categories, GoodReads genres, Criteo, and a synthetic set with a planted signal. ``plugin.py`` holds
the hook; each dataset lives in its own module, ``base.py`` holds what the file-based ones share (finding the
raw files, the cache key), and docs/datasets.md describes each one."""
