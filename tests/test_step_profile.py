"""benchmarks/step_profile.py --tiny: the two factors of the roofline fraction come from one real epoch (the
speeds it reports are measurements, not asserted; benchmarks/README.md)."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def step_profile():
    sys.path.insert(0, str(BENCHMARKS))  # the script imports its sibling modules, as when run from benchmarks/
    try:
        spec = importlib.util.spec_from_file_location("step_profile", BENCHMARKS / "step_profile.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["step_profile"] = module  # its dataclass resolves annotations through sys.modules
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("step_profile", None)
        sys.path.remove(str(BENCHMARKS))


def test_a_tiny_profile_counts_the_dnn_products_of_a_training_sample(step_profile):
    (dnn,) = step_profile.main(["--tiny", "--models", "dnn", "--rounds", "1"])
    # synthetic: 8 fields x 16 dims = 128 inputs; 400-400-400 then 1 output; a training sample does each product
    # three times (forward, input gradient, weight gradient; the first layer's input gradient reaches the embeddings)
    forward = 2 * (128 * 400 + 400 * 400 + 400 * 400 + 400 * 1)
    assert dnn.flops_per_sample == pytest.approx(3 * forward)
    assert 0 < dnn.matmul_share < 1 and dnn.in_loop_matmul_rate > 0 and dnn.samples_per_s > 0
    assert dnn.fraction_of_limit == pytest.approx(dnn.flops_per_sample * dnn.samples_per_s / dnn.limit)


def test_an_unknown_model_is_named(step_profile):
    with pytest.raises(SystemExit, match="unknown benchmark model 'dnn-9000'"):
        step_profile.main(["--tiny", "--models", "dnn-9000"])


def test_step_parts_count_the_arithmetic_floor_and_find_the_mlp_tower(step_profile):
    dnn, lr = step_profile.main(["--tiny", "--parts", "--models", "dnn,lr", "--rounds", "1"])
    forward = 2 * (128 * 400 + 400 * 400 + 400 * 400 + 400 * 1)
    limit = 256 * 3 * forward / (dnn.arithmetic_us * 1e-6)  # the floor is the step's products at the limit's rate
    assert 1e9 < limit < 1e13
    assert dnn.tower_us > 0 and lr.tower_us == 0 and lr.arithmetic_us == 0  # LR has no tower and no products
    assert dnn.engine_step_us > 0 and dnn.forward_backward_us > 0 and dnn.traced_us > 0 and lr.traced_us > 0


def test_peer_rates_and_the_step_each_target_allows(step_profile, tmp_path, capsys):
    def bench(impl, median):
        return {"stats": {"median": median, "rounds": 3},
                "extra_info": {"impl": impl, "dataset": "movielens-100k", "model": "fm", "batch_size": 256,
                               "n_train": 1000}}

    path = tmp_path / "overhead.json"
    path.write_text(json.dumps({"benchmarks": [bench("deepctr", 0.02), bench("fuxictr", 0.04),
                                               {**bench("deepctr", 0.5), "extra_info": {
                                                   **bench("deepctr", 0.5)["extra_info"], "batch_size": 1024}}]}))
    rates = step_profile.peer_rates(str(path))
    assert rates == {("fm", "deepctr"): 50_000.0, ("fm", "fuxictr"): 25_000.0}  # batch 1024 left out
    step_profile.print_parts([step_profile.StepParts("fm", 900.0, 500.0, 480.0, 0.0, 0.0)], rates)
    row = capsys.readouterr().out.splitlines()[-1]
    # 3× 50,000/s is 150,000/s, a 256-row step of 1,707 µs; 5× 25,000/s is 125,000/s, 2,048 µs
    assert row == "| fm | 900 | 500 | 480 | 0 | 0 | 1,707 | 2,048 |"
