"""Built-in datasets (MovieLens-100K, a synthetic set with a planted signal), registered through the ``ctrbench``
entry point. ``plugin.py`` holds the hook; each dataset lives in its own module."""
