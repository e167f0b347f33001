"""Readers for the raw formats of the public CTR datasets, each tolerant in the way its format needs.

- ``read_separated``: one record a line, a multi-character separator (MovieLens-1M's ``::``), no quoting.
- ``read_quoted_csv``: quoted fields that may contain the separator (BookCrossing's ``"a; b";"c"``);
  lines with the wrong number of fields are skipped and counted, never guessed at.
- ``read_json_lines``: one JSON object a line, optionally gzip-compressed (Amazon 2018, GoodReads); only
  the named keys are kept, read in chunks so files larger than memory can be filtered while reading;
  lines that are not JSON objects are skipped and counted.

Every reader returns string columns (``None``/missing as ``""``) and reports skipped lines by line number,
so a dataset can log them and tests can check them exactly.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pandas as pd

from ctrbench.errors import DataError

log = logging.getLogger(__name__)


@dataclass
class Skipped:
    """Lines a reader skipped: how many, and the first few line numbers (1-based) for the log."""

    count: int = 0
    lines: list[int] = field(default_factory=list)

    def add(self, line: int) -> None:
        self.count += 1
        if len(self.lines) < 20:
            self.lines.append(line)

    def log(self, what: str, why: str) -> None:
        if self.count:
            shown = ", ".join(map(str, self.lines)) + (", ..." if self.count > len(self.lines) else "")
            log.warning("%s: skipped %d %s (lines %s)", what, self.count, why, shown)


def open_text(path: Path, encoding: str) -> IO[str]:
    """A text stream over ``path``, gunzipped when the name ends in ``.gz``; universal newlines off."""
    if Path(path).suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding=encoding, newline="")
    return open(path, encoding=encoding, newline="")  # noqa: SIM115 (the caller closes it)


def read_separated(path: Path, sep: str, names: Sequence[str], *, encoding: str = "latin-1",
                   what: str = "") -> pd.DataFrame:
    """A file of ``sep``-separated records without quoting; a line with another field count is a DataError."""
    what = what or str(path)
    columns: list[list[str]] = [[] for _ in names]
    with open_text(path, encoding) as f:
        for number, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if not line:
                continue
            parts = line.split(sep)
            if len(parts) != len(names):
                raise DataError(f"{what}: line {number} has {len(parts)} fields separated by {sep!r}, "
                                f"expected {len(names)} ({', '.join(names)})")
            for column, value in zip(columns, parts, strict=True):
                column.append(value)
    return pd.DataFrame({n: pd.Series(c, dtype=object) for n, c in zip(names, columns, strict=True)})


def read_quoted_csv(path: Path, *, sep: str = ";", encoding: str = "latin-1",
                    what: str = "") -> tuple[pd.DataFrame, Skipped]:
    """A CSV with a header row and ``"``-quoted fields; rows whose field count differs from the header are skipped.

    Quoted fields may hold the separator and doubled quotes. Returns the table (string columns named by the
    header) and the skipped lines (numbered as lines of the file).
    """
    what = what or str(path)
    skipped = Skipped()
    with open_text(path, encoding) as f:
        reader = csv.reader(f, delimiter=sep, quotechar='"', doublequote=True, strict=False)
        try:
            header = next(reader)
        except StopIteration:
            raise DataError(f"{what}: empty file") from None
        except csv.Error as exc:
            raise DataError(f"{what}: unreadable header: {exc}") from None
        width = len(header)
        rows: list[list[str]] = []
        start = reader.line_num + 1
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error:  # e.g. a NUL byte or an unterminated quote at the end of the file
                skipped.add(start)
                start = reader.line_num + 1
                continue
            if row and len(row) != width:
                skipped.add(start)
            elif row:
                rows.append(row)
            start = reader.line_num + 1
    df = pd.DataFrame(rows, columns=header, dtype=object) if rows else pd.DataFrame(columns=header, dtype=object)
    return df, skipped


def iter_json_lines(path: Path, skipped: Skipped, *, encoding: str = "utf-8") -> Iterator[dict[str, Any]]:
    """The JSON objects of a (gzipped) JSON-lines file; other lines go to ``skipped``."""
    with open_text(path, encoding) as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                skipped.add(number)
                continue
            if isinstance(record, dict):
                yield record
            else:
                skipped.add(number)


def read_json_lines(path: Path, keys: Sequence[str], *, what: str = "", keep: Callable[[dict[str, Any]], bool] | None
                    = None, transform: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
                    chunk_rows: int = 1 << 20) -> tuple[pd.DataFrame, Skipped]:
    """The ``keys`` of every JSON object in ``path`` as a table (absent keys: None), with the skipped lines.

    ``keep(record)`` drops records while reading; ``transform(chunk)`` reduces each chunk of ``chunk_rows``
    records (parse dates, cast ratings) before the chunks are joined, so only the reduced form of a large
    file is ever held. Repeated string values (ids) share one object. A file without a single JSON object
    is a DataError.
    """
    what = what or str(path)
    skipped = Skipped()
    interned: dict[str, str] = {}
    chunks: list[pd.DataFrame] = []
    columns: list[list[Any]] = [[] for _ in keys]

    def flush() -> None:
        if columns[0]:
            chunk = pd.DataFrame({k: pd.Series(c, dtype=object) for k, c in zip(keys, columns, strict=True)})
            chunks.append(transform(chunk) if transform is not None else chunk)
            for c in columns:
                c.clear()

    records = 0
    try:
        for record in iter_json_lines(path, skipped):
            records += 1
            if keep is not None and not keep(record):
                continue
            for k, column in zip(keys, columns, strict=True):
                value = record.get(k)
                if isinstance(value, str):
                    value = interned.setdefault(value, value)
                column.append(value)
            if len(columns[0]) >= chunk_rows:
                flush()
        flush()
    except (OSError, EOFError, UnicodeDecodeError) as exc:  # a truncated gzip stream, a wrong encoding
        raise DataError(f"{what}: unreadable: {type(exc).__name__}: {exc}") from None
    if records == 0:
        raise DataError(f"{what}: no JSON object found ({skipped.count} lines skipped): "
                        "expected one JSON object a line")
    if chunks:
        return pd.concat(chunks, ignore_index=True), skipped
    empty = pd.DataFrame({k: pd.Series([], dtype=object) for k in keys})
    return (transform(empty) if transform is not None else empty), skipped
