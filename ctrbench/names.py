"""Names that become file or directory names: suite names, labels used in paths, run ids.

A name is a *slug*: letters, digits, ``.``, ``_`` and ``-`` only, at most ``MAX_LENGTH`` characters, and not
starting with ``.`` or ``_`` (so never ``.`` or ``..``, never a hidden file, never the store's own ``_``
entries). A slug cannot hold a path separator, a NUL byte or a drive letter, so ``root / name`` always stays
one level under ``root``.
"""

from __future__ import annotations

import re

from ctrbench.errors import CtrbenchError

MAX_LENGTH = 128
_SLUG = re.compile(r"[A-Za-z0-9-][A-Za-z0-9._-]*")


class InvalidName(CtrbenchError, ValueError):
    """A name that cannot be used as one file or directory name; the message is one line."""


def is_slug(value: object) -> bool:
    """Whether ``value`` is a string that ``check_slug`` accepts."""
    return isinstance(value, str) and 0 < len(value) <= MAX_LENGTH and _SLUG.fullmatch(value) is not None


def check_slug(value: object, what: str) -> str:
    """Return ``value`` if it is a slug, else raise ``InvalidName`` (a ``ValueError``) naming ``what``.

    ``what`` says which name it is, e.g. ``"suite name"``; the message is one line whatever ``value`` holds
    (newlines and NUL bytes are shown escaped).
    """
    if is_slug(value):
        return value  # type: ignore[return-value]
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    if not isinstance(value, str):
        problem = f"must be a string, got {type(value).__name__} {shown}"
    elif not value:
        problem = "must not be empty"
    elif len(value) > MAX_LENGTH:
        problem = f"must be at most {MAX_LENGTH} characters, got {len(value)}"
    elif re.fullmatch(r"[A-Za-z0-9._-]+", value) is None:
        problem = f"may only hold letters, digits, '.', '_' and '-', got {shown}"
    else:
        problem = f"must not start with '{value[0]}', got {shown}"
    raise InvalidName(f"{what} {problem}")
