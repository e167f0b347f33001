"""Turn a pytest-benchmark JSON from ``benchmarks/`` into the markdown tables of benchmarks/README.md.

    python benchmarks/report.py RESULT.json                 # print the markdown
    python benchmarks/report.py RESULT.json --readme benchmarks/README.md   # replace the results section

Every ratio is ctrbench / reference within the one JSON, i.e. measured in the same process run:
throughput ratio > 1 means ctrbench trains faster, memory ratio < 1 means it peaks lower.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

REFERENCES = ("deepctr", "fuxictr")
LABELS = {"ctrbench": "ctrbench", "deepctr": "DeepCTR-Torch", "fuxictr": "FuxiCTR"}
AUC_TOLERANCE = 0.003
START, END = "<!-- results:start -->", "<!-- results:end -->"
# The overhead-regime run (run.sh overhead) has its own section, so neither run overwrites the other's tables.
SECTIONS = {"results": (START, END), "overhead": ("<!-- overhead:start -->", "<!-- overhead:end -->")}
ROOFLINE_MIN_FLOPS = 1e5  # per sample: below this a model is not compute-heavy and has no meaningful fraction

Key = tuple[str, str, int]  # dataset, model, batch size


def load(path: Path) -> tuple[dict[str, Any], dict[Key, dict[str, dict[str, Any]]], list[dict[str, Any]]]:
    """(run info, {config: {impl: row}}, memmap rows) from one pytest-benchmark JSON."""
    doc = json.loads(Path(path).read_text())
    grid: dict[Key, dict[str, dict[str, Any]]] = defaultdict(dict)
    memmap = []
    for b in doc["benchmarks"]:
        info, stats = b.get("extra_info", {}), b["stats"]
        if "impl" in info:
            key = (info["dataset"], info["model"], int(info["batch_size"]))
            grid[key][info["impl"]] = {
                "median_s": stats["median"], "rounds": stats["rounds"],
                "iqr_s": stats.get("iqr", 0.0),
                "samples_per_s": info["n_train"] / stats["median"] if stats["median"] else float("nan"),
                "peak_mib": info.get("peak_rss_mib"), "auc": info.get("test_auc"), "auc_sd": info.get("test_auc_sd"),
                "auc_n": len(info.get("test_auc_seeds") or [1]), "params": info.get("params"),
                "n_train": info["n_train"], "flops_per_sample": info.get("flops_per_sample"),
                "matmul_flops_per_s": info.get("matmul_flops_per_s"),
                "score_per_s": (info["n_test"] / info["score_seconds"]) if info.get("score_seconds") else None,
            }
        elif "anon_growth_mib" in info:
            memmap.append({**info, "median_s": stats["median"]})
    run = {"datetime": doc.get("datetime"), "machine": doc.get("machine_info", {}),
           "commit": doc.get("commit_info", {})}
    return run, dict(grid), memmap


def _fmt(x: float | None, spec: str) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _geomean(xs: list[float]) -> float | None:
    xs = [x for x in xs if x is not None and x > 0]
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else None


def _order(grid: dict[Key, Any]) -> list[Key]:
    models = ["dnn", "deepfm", "dcn", "dcnv2"]
    return sorted(grid, key=lambda k: (k[0], models.index(k[1]) if k[1] in models else 99, k[1], k[2]))


def _busy_warning(bench: dict[str, Any]) -> list[str]:
    """A warning line when other work loaded the machine: the 1-minute load average before the run, or at its end
    minus the run's own torch threads, above half the CPUs."""
    cpus = bench.get("cpu_count") or 0
    start, end = bench.get("loadavg_at_start"), bench.get("loadavg_at_end")
    others = [x for x in (start[0] if start else None,
                          end[0] - (bench.get("torch_threads") or 1) if end else None) if x is not None]
    if not cpus or not others or max(others) <= cpus / 2:
        return []
    return [f"**⚠ The machine was busy (load from other work up to {max(others):.1f} on {cpus} CPUs): these numbers "
            "are distorted, and with more than one torch thread badly so. Rerun idle, or with --bench-threads 1.**",
            ""]


def render(run: dict[str, Any], grid: dict[Key, dict[str, dict[str, Any]]], memmap: list[dict[str, Any]]) -> str:
    mi = run["machine"]
    bench = mi.get("ctrbench_bench", {})
    cfg = bench.get("config", {})
    versions = ", ".join(f"{k} {v}" for k, v in bench.get("versions", {}).items())
    commit = run["commit"] or {}
    out = [
        f"Run {run['datetime'] or '?'} on {mi.get('cpu', {}).get('brand_raw', mi.get('processor', '?'))} "
        f"({bench.get('cpu_count', '?')} CPUs, torch threads {bench.get('torch_threads', '?')}, "
        f"device {cfg.get('device', '?')}); load average at start {bench.get('loadavg_at_start')}, "
        f"at end {bench.get('loadavg_at_end')}; commit {commit.get('id') or 'not recorded'}"
        f"{' (dirty)' if commit.get('dirty') else ''}; {versions}. "
        f"{cfg.get('rounds', '?')} timed rounds after {cfg.get('warmup', '?')} warm-up per cell; "
        f"whole run {bench.get('wall_seconds', '?')} s.",
        "",
        *_busy_warning(bench),
        "**Throughput** — training samples/s of one epoch (median round; higher is better) and the ratio "
        "ctrbench / reference (> 1: ctrbench faster).",
        "",
        "| dataset | model | batch | ctrbench | DeepCTR-Torch | FuxiCTR | ÷ DeepCTR | ÷ FuxiCTR |",
        "| :--- | :--- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    out += _ratio_rows(grid, "samples_per_s", ",.0f")
    out += ["**Peak memory** — growth of resident memory during one round (model, optimizer state, input "
            "conversion, activations; MiB, median round; lower is better) and the ratio ctrbench / reference "
            "(< 1: ctrbench lower).", "",
            "| dataset | model | batch | ctrbench | DeepCTR-Torch | FuxiCTR | ÷ DeepCTR | ÷ FuxiCTR |",
            "| :--- | :--- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    out += _ratio_rows(grid, "peak_mib", ",.1f")
    if any(r.get("score_per_s") for row in grid.values() for r in row.values()):
        out += ["**Scoring** — test-split samples/s of each library's own `predict` on the trained model (batch "
                "4096, best of 3; higher is better) and the ratio ctrbench / reference.", "",
                "| dataset | model | batch | ctrbench | DeepCTR-Torch | FuxiCTR | ÷ DeepCTR | ÷ FuxiCTR |",
                "| :--- | :--- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        out += _ratio_rows(grid, "score_per_s", ",.0f")

    n_seeds = max((r["auc_n"] for row in grid.values() for r in row.values()), default=1)
    seeds = (f"mean ± sd over {n_seeds} seeds" if n_seeds > 1 else
             "one seed: seed-to-seed sd is ~0.002-0.003, so use --bench-auc-seeds for a firm check")
    out += [f"**Test AUC after one epoch** ({seeds}; same split) and ctrbench − reference: ✓ where "
            f"|Δ| ≤ {AUC_TOLERANCE} (the speed ratio above is at equal test AUC), ▲ ctrbench higher, "
            "▼ ctrbench lower.", "",
            "| dataset | model | batch | ctrbench | DeepCTR-Torch | FuxiCTR | Δ DeepCTR | Δ FuxiCTR |",
            "| :--- | :--- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for key in _order(grid):
        row = grid[key]
        a = {i: row[i]["auc"] for i in row}
        cells = [_fmt(a.get(i), ".4f") + (f" ± {row[i]['auc_sd']:.4f}" if i in row and row[i]["auc_sd"] else "")
                 for i in ("ctrbench", *REFERENCES)]
        ds = []
        for ref in REFERENCES:
            if a.get("ctrbench") is None or a.get(ref) is None:
                ds.append("–")
                continue
            d = a["ctrbench"] - a[ref]
            ds.append(f"{d:+.4f} {'✓' if abs(d) <= AUC_TOLERANCE else ('▲' if d > 0 else '▼')}")
        out.append(f"| {key[0]} | {key[1]} | {key[2]} | " + " | ".join(cells + ds) + " |")
    out.append("")

    out += _roofline(grid)
    if memmap:
        out += ["**Memory-mapped epoch** (`test_memmap.py`, batch gathering only, no model).", "",
                "| rows | X (MiB) | anonymous memory growth (MiB) | growth / X | index vectors (MiB) | rows/s |",
                "| ---: | ---: | ---: | ---: | ---: | ---: |"]
        for m in memmap:
            out.append(f"| {m['rows']:,} | {m['x_mib']:,.1f} | {m['anon_growth_mib']:,.1f} | {m['growth_over_x']:.3f} "
                       f"| {m['index_mib']:,.1f} | {m['n_train'] / m['median_s']:,.0f} |")
        out.append("")
    return "\n".join(out)


def _roofline(grid: dict[Key, dict[str, dict[str, Any]]]) -> list[str]:
    """Fraction of the arithmetic limit for every compute-heavy cell: FLOPs/sample × samples/s ÷ matmul FLOP/s."""
    rows = []
    for key in _order(grid):
        row = grid[key]
        any_row = next(iter(row.values()))
        flops, rate = any_row.get("flops_per_sample"), any_row.get("matmul_flops_per_s")
        if not flops or not rate or flops < ROOFLINE_MIN_FLOPS:
            continue
        limit = rate / flops
        cells = [_fmt(row[i]["samples_per_s"] * flops / rate if i in row else None, ".0%")
                 for i in ("ctrbench", *REFERENCES)]
        rows.append(f"| {key[0]} | {key[1]} | {key[2]} | {flops / 1e6:.2f} | {rate / 1e9:.1f} | {limit:,.0f} | "
                    + " | ".join(cells) + " |")
    if not rows:
        return []
    return ["**Fraction of the arithmetic limit** — model matmul FLOPs per training sample (forward + backward, "
            "counted by `FlopCounterMode` on the ctrbench build; `roofline.py`) × samples/s ÷ the float32 matmul "
            "rate measured in the same process (`[256, 400] @ [400, 400]`, best of 3): the share of the machine's "
            "arithmetic a library's epoch turns into model FLOPs (its input conversion and validation pass "
            "included). Models under 0.1 MFLOP per sample (LR, FM) are overhead-bound and left out.", "",
            "| dataset | model | batch | MFLOP/sample | matmul GFLOP/s | limit (samples/s) | ctrbench | "
            "DeepCTR-Torch | FuxiCTR |",
            "| :--- | :--- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |", *rows, ""]


def update_readme(readme: Path, text: str, section: str = "results") -> None:
    start, end = SECTIONS[section]
    body = readme.read_text()
    if start not in body or end not in body:
        raise SystemExit(f"{readme}: no {start} ... {end} section to replace")
    new = re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _: f"{start}\n{text}\n{end}", body, flags=re.S)
    readme.write_text(new)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("json", type=Path, help="pytest-benchmark --benchmark-json output")
    ap.add_argument("--readme", type=Path, help="replace a results section of this file")
    ap.add_argument("--section", choices=sorted(SECTIONS), default="results",
                    help="which section of --readme: results (run.sh full) or overhead (run.sh overhead)")
    args = ap.parse_args(argv)
    text = render(*load(args.json))
    if args.readme:
        update_readme(args.readme, text, args.section)
    sys.stdout.write(text + "\n")
    return 0

def _ratio_rows(grid: dict, metric: str, fmt: str) -> list[str]:
    """One table body: each cell's value per implementation, ctrbench / reference ratios, geometric means."""
    ratios: dict[str, list[float]] = defaultdict(list)
    rows = []
    for key in _order(grid):
        values = {i: grid[key][i][metric] for i in grid[key]}
        cells = [_fmt(values.get(i), fmt) for i in ("ctrbench", *REFERENCES)]
        rs = []
        for ref in REFERENCES:
            r = _ratio(values.get("ctrbench"), values.get(ref))
            if r is not None:
                ratios[ref].append(r)
            rs.append(_fmt(r, ".2f"))
        rows.append(f"| {key[0]} | {key[1]} | {key[2]} | " + " | ".join(cells + rs) + " |")
    gm = [_fmt(_geomean(ratios[r]), ".2f") for r in REFERENCES]
    return [*rows, f"| **geometric mean** | | | | | | **{gm[0]}** | **{gm[1]}** |", ""]


if __name__ == "__main__":
    raise SystemExit(main())
