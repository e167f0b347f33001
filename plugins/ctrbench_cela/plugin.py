"""Registers the cela methods (filled in by its module)."""
