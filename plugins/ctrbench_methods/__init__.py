"""Built-in methods that need no PLM: `ctr` (the backbone alone)."""
