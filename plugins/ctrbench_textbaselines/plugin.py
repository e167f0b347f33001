"""Registers the textbaselines methods (filled in by its module)."""
