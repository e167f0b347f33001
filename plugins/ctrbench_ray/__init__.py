"""The `ray` executor: each run is a Ray task, on a local Ray instance or a Ray cluster."""
