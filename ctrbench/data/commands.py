"""``ctrbench data prepare|info NAME``: prepare a dataset into the cache once, and show what it holds.

``prepare`` runs the dataset's preprocessing (download or local raw files → cached arrays) with progress
bars for the long passes, and prints one summary line. ``info`` prepares it if needed and prints rich tables:
rows and positive rate per split, every field's cardinality, and the long-tail buckets of the test split
(ClickPrompt's user x item tail crossings and SLLM4CTR's head/tail items, ``ctrbench.data.buckets``).

Both take ``--set key=value`` (a config key of the dataset, the value read as YAML, as in suites) and
``--source DIR`` (shorthand for ``--set source=DIR``). Exit codes: 0 ok, 2 bad input — an unknown dataset or
config key, missing or corrupt raw files — printed as one line naming the dataset or file.

The CLI wires these in with ``add_data_parser(sub)`` and ``COMMANDS["data"] = run_data_command``. The CLI builds
its parser for every command (``ctrbench --help`` included), so this module imports numpy, YAML and rich only
inside the functions that run the commands.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctrbench.errors import CtrbenchError, DataError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from ctrbench.data.types import CTRData

EXIT_OK, EXIT_BAD_INPUT = 0, 2


def add_data_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``data`` with its ``prepare`` and ``info`` subcommands to the CLI's subparsers."""
    data = subparsers.add_parser("data", help="prepare a dataset into the cache, or show what it holds")
    sub = data.add_subparsers(dest="data_command", required=True)
    for name, text in (("prepare", "download or read the raw files and cache the preprocessed arrays"),
                       ("info", "rows, positive rate, field cardinalities and long-tail buckets (prepares first)")):
        sp = sub.add_parser(name, help=text)
        sp.add_argument("dataset", help="registered dataset name (see 'ctrbench list datasets'), e.g. movielens-1m")
        sp.add_argument("--set", dest="data_config", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                        help="dataset config, e.g. --set history_length=0 min_count=5")
        sp.add_argument("--source", help="directory holding the raw files (the 'source' config key)")
        sp.add_argument("--cache", help="dataset cache root (default: $CTRBENCH_CACHE or ~/.cache/ctrbench)")
    return data


def parse_config(pairs: list[str], source: str | None) -> dict[str, Any]:
    """``["k=v", ...]`` → ``{k: yaml(v)}``; ``source`` (``--source``) wins over a ``source=`` pair."""
    import yaml

    config: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise DataError(f"--set expects KEY=VALUE, got {pair!r}")
        try:
            config[key.strip()] = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            raise DataError(f"--set {pair!r}: the value is not valid YAML") from None
    if source is not None:
        config["source"] = str(Path(source).expanduser())
    return config


def load_dataset(name: str, config: dict[str, Any], cache_dir: Path, console: Console | None = None) -> CTRData:
    """Create the registered dataset ``name`` with ``config`` and load it (preparing it on a cache miss)."""
    from ctrbench.data.progress import reporting
    from ctrbench.plugins import load_plugins
    from ctrbench.progress import RichReporter

    entry = load_plugins().registry("datasets").get(name)
    dataset = entry.create(**config)
    reporter = RichReporter(console) if console is not None else None
    try:
        with reporting(reporter):
            return dataset.load(cache_dir)
    finally:
        if reporter is not None:
            reporter.close()


def run_data_command(args: argparse.Namespace, console: Console) -> int:
    """Run ``data prepare`` or ``data info``; CtrbenchErrors become one line on stderr and exit code 2."""
    from ctrbench.data.cache import cache_root

    try:
        config = parse_config(list(args.data_config or []), args.source)
        cache_dir = Path(args.cache).expanduser() if args.cache else cache_root()
        data = load_dataset(args.dataset, config, cache_dir, console)
    except CtrbenchError as exc:
        print(f"ctrbench: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:  # an unreadable source directory, a full disk
        print(f"ctrbench: error: data {args.data_command} {args.dataset}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.data_command == "prepare":
        console.print(summary_line(data, cache_dir))
    else:
        for table in info_tables(data):
            console.print(table)
    return EXIT_OK


def summary_line(data: CTRData, cache_dir: Path) -> str:
    import numpy as np

    sizes = data.split_sizes()
    rate = float(np.mean(data.y)) if data.num_samples else 0.0
    return (f"{data.name}: {data.num_samples:,} rows (train {sizes['train']:,} / valid {sizes['valid']:,} / "
            f"test {sizes['test']:,}), {100 * rate:.2f}% positive, {len(data.fields)} fields; "
            f"fingerprint {data.fingerprint[:16]} in {cache_dir}")


def info_tables(data: CTRData) -> list[Table]:
    """The three tables of ``data info``: splits, fields, long-tail buckets of the test split."""
    import numpy as np
    from rich.table import Table

    from ctrbench.data.types import SPLITS

    splits = Table("split", "rows", "positives", "positive rate", title=f"{data.name} ({data.fingerprint[:16]})",
                   caption=data.description or None)
    y = np.asarray(data.y)
    for s in SPLITS:
        rows = np.asarray(data.splits[s])
        pos = int(y[rows].sum()) if len(rows) else 0
        splits.add_row(s, f"{len(rows):,}", f"{pos:,}", f"{pos / len(rows):.4f}" if len(rows) else "-")
    total = int(y.sum())
    splits.add_row("all", f"{data.num_samples:,}", f"{total:,}",
                   f"{total / data.num_samples:.4f}" if data.num_samples else "-")

    fields = Table("field", "text", "kind", "cardinality", "vocab size", title="fields (index 0 = unknown)")
    for f in [*data.fields, *data.sequence_fields]:
        length = f" (length {data.sequences[f.name].shape[1]})" if f.name in data.sequences else ""
        shares = f", shares {f.shares}" if f.shares else ""
        fields.add_row(f.name, f.label, f.kind + shares + length, f"{f.vocab_size - 1:,}", f"{f.vocab_size:,}")
    return [splits, fields, bucket_table(data)]


def bucket_table(data: CTRData) -> Table:
    """Test rows per long-tail bucket: ClickPrompt's (bottom 10% users/items by train frequency) and SLLM4CTR's."""
    import numpy as np
    from rich.table import Table

    from ctrbench.data.buckets import headtail_item_masks, longtail_masks

    table = Table("bucket", "test rows", "share", title="long-tail buckets of the test split")
    if not data.user_field or not data.item_field:
        table.add_row("(none: the dataset has no user and item fields)", "-", "-")
        return table
    n = len(data.splits["test"])
    masks = {**{f"ClickPrompt {k}": v for k, v in longtail_masks(data, "test").items()},
             **{f"SLLM4CTR {k} items": v for k, v in headtail_item_masks(data, "test").items()}}
    for name, mask in masks.items():
        count = int(np.sum(mask))
        table.add_row(name, f"{count:,}", f"{count / n:.3f}" if n else "-")
    return table
