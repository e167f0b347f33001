"""Registers the flip method (filled in by its module)."""
