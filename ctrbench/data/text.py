"""Moved to `ctrbench.text` (`ctrbench/text/templates.py`); this module re-exports it for existing imports."""

from ctrbench.text.templates import clear_cache, item_side_fields, item_texts, phrase, render_row, render_rows

__all__ = ["clear_cache", "item_side_fields", "item_texts", "phrase", "render_row", "render_rows"]
