"""benchmarks/gpu_check.py with ``--tiny`` on the CPU: the script runs end to end and writes the JSON the GPU run
will write (every section, finite positive figures, FLOP estimates as documented), so it cannot rot before a GPU
is lent. What it measures on a GPU is not asserted anywhere: it is a measurement (benchmarks/README.md)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
STEPS = ("clickprompt_pamlm", "clickprompt_finetune", "tallrec_lora")
STEP_FIGURES = ("seconds_per_step", "flops_per_step", "flops_per_s", "fraction_of_limit", "tokens_per_step")


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up while the class is built
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("gpu_check", None)


def positive(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def test_tiny_cpu_run_writes_every_section(gpu_check, tmp_path, capsys):
    out = tmp_path / "gpu_check.json"
    assert gpu_check.main(["--tiny", "--device", "cpu", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert "of limit" in capsys.readouterr().out  # the table was printed

    assert report["schema"] == gpu_check.SCHEMA and report["tiny"] is True and positive(report["seconds"])
    env = report["environment"]
    assert env["device"] == "cpu" and env["torch"] and env["name"]
    assert report["targets"]["fraction_of_limit"] == 0.40 and report["targets"]["seconds"] == 480
    limit = report["limit"]
    assert limit["status"] == "ok" and limit["dtype"] == "float32" and positive(limit["flops_per_s"])
    assert limit["flops_per_s"] == max(limit["by_size"].values())

    m = report["measurements"]
    assert set(m) == {*STEPS, "ctr_zoo", "local_gpus"}
    for key in STEPS:
        r = m[key]
        assert r["status"] == "ok", r
        assert all(positive(r[f]) for f in STEP_FIGURES), r
        assert 0 < r["fraction_of_limit"] < 10
        assert r["flops_per_s"] == pytest.approx(r["flops_per_step"] / r["seconds_per_step"])
        assert isinstance(r["meets_target"], bool) and r["estimate"]
    # the documented estimates: 6 x layer parameters x tokens, plus attention (and PA-MLM's head) on top
    for key in ("clickprompt_pamlm", "clickprompt_finetune"):
        r = m[key]
        assert 6 * r["encoder_params"] * r["tokens_per_step"] < r["flops_per_step"]
    assert m["clickprompt_pamlm"]["flops_per_step"] > m["clickprompt_finetune"]["flops_per_step"]  # the MLM head
    t = m["tallrec_lora"]
    assert t["gradient_checkpointing"] and t["lora"]["target_modules"] == ["q_proj", "v_proj"]
    assert 6 * t["layer_params"] * t["tokens_per_step"] < t["flops_per_step"] < 6.5 * t["layer_params"] * t[
        "tokens_per_step"]
    assert t["model_flops_per_step"] < t["flops_per_step"] and 0 < t["model_fraction_of_limit"] < 10
    assert 0 < t["trainable_params"] < t["total_params"]

    zoo = m["ctr_zoo"]
    assert zoo["status"] == "ok"
    cells = {(c["model"], c["batch_size"]) for c in zoo["cells"]}
    assert cells == {(name, b) for name in gpu_check.CTR_MODELS for b in gpu_check.TINY.ctr_batch_sizes}
    assert all(positive(c["samples_per_s"]) and positive(c["seconds_per_step"]) for c in zoo["cells"])

    assert m["local_gpus"]["status"] == "skipped" and m["local_gpus"]["reason"] == "no CUDA device"
