"""Built-in executors (the `local` one; multi-GPU and cluster executors come as further plugins)."""
