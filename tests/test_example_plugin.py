"""The third-party path end to end: install the example plugin, see it, check it, run it in a suite."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
EXAMPLE = ROOT / "examples" / "ctrbench-example-plugin"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, str]:
    """pip-install the example into a private target dir; its entry point is then visible via PYTHONPATH."""
    target = tmp_path_factory.mktemp("site")
    source = tmp_path_factory.mktemp("src") / "plugin"
    shutil.copytree(EXAMPLE, source)  # setuptools writes build/ into the source tree: keep the repo clean
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(source)], check=True, capture_output=True)
    assert any(p.name.startswith("ctrbench_example_plugin-") for p in target.iterdir())
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(target), env.get("PYTHONPATH", "")])
    return env


def ctrbench(env: dict[str, str], *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ctrbench.cli", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=600)


def test_listed_with_its_plugin_name(installed):
    out = ctrbench(installed, "list", "ctr").stdout
    assert "example-gated-mlp" in out and "example" in out
    assert "example-gated-mlp" not in ctrbench(dict(os.environ), "list", "ctr").stdout


def test_passes_the_conformance_kit(installed):
    code = ("from ctrbench.plugins import load_plugins\n"
            "from ctrbench.testing import check_ctr_backbone\n"
            "entry = load_plugins().registry('ctr').get('example-gated-mlp')\n"
            "assert entry.plugin == 'example', entry.plugin\n"
            "check_ctr_backbone(entry.factory, config={'hidden_units': (8,)})\n"
            "print('conformance ok')\n")
    proc = subprocess.run([sys.executable, "-c", code], env=installed, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "conformance ok" in proc.stdout


@pytest.mark.slow
def test_runs_in_a_suite_and_reaches_the_leaderboard(installed, tmp_path):
    proc = ctrbench(installed, "run", str(EXAMPLE / "suite.yaml"), "--threads", "1", "--set", "train.epochs=1",
                    "seeds=[1]", "--store", str(tmp_path / "runs"), "--leaderboards", str(tmp_path / "boards"),
                    cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    board = (tmp_path / "boards" / "example-plugin.md").read_text()
    assert "| example-gated-mlp" in board and "| dnn (baseline)" in board
    assert "example (ctrbench-example-plugin 0.1.0)" in board
