"""benchmarks/step_profile.py --tiny: the two factors of the roofline fraction come from one real epoch (the
speeds it reports are measurements, not asserted; benchmarks/README.md)."""

import importlib.util
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
