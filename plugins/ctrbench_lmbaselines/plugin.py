"""Registers the lmbaselines methods (filled in by its module)."""
