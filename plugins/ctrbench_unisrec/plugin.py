"""Registers the unisrec method (filled in by its module)."""
