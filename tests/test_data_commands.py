"""``ctrbench data prepare|info``: argument parsing, output, exit codes (through the functions the CLI wires in)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from rich.console import Console
from test_datasets_movielens1m import write_ml1m

from ctrbench.data.commands import add_data_parser, run_data_command


def run(argv: list[str]) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="ctrbench")
    add_data_parser(parser.add_subparsers(dest="command", required=True))
    console = Console(record=True, width=200, force_terminal=False)
    code = run_data_command(parser.parse_args(argv), console)
    return code, console.export_text()


@pytest.fixture()
def ml1m(tmp_path: Path) -> Path:
    return write_ml1m(tmp_path / "raw")


def test_prepare_prints_one_summary_line(ml1m: Path, tmp_path: Path) -> None:
    code, out = run(["data", "prepare", "movielens-1m", "--source", str(ml1m), "--cache", str(tmp_path / "c")])
    assert code == 0
    assert out.startswith("movielens-1m: 20 rows (train 16 / valid 2 / test 2), 75.00% positive, 8 fields; "
                          "fingerprint ")
    assert len(out.strip().splitlines()) == 1
    assert len(list((tmp_path / "c" / "preprocessed").iterdir())) == 1


def test_info_shows_splits_fields_and_buckets(ml1m: Path, tmp_path: Path) -> None:
    code, out = run(["data", "info", "movielens-1m", "--source", str(ml1m), "--cache", str(tmp_path / "c"),
                     "--set", "history_length=5"])
    assert code == 0
    lines = [" ".join(line.replace("│", " ").split()) for line in out.splitlines()]
    assert "train 16 12 0.7500" in lines
    assert "test 2 2 1.0000" in lines
    assert "all 20 15 0.7500" in lines
    assert "item_id movie id categorical 8 9" in lines
    assert "history recently liked movies sequence, shares item_id (length 5) 8 9" in lines
    # both test rows rate movie 80, which train never saw (so: a tail item); none of 3 users is in the bottom 10%
    assert "ClickPrompt user_head&item_tail 2 1.000" in lines
    assert "ClickPrompt user_tail 0 0.000" in lines
    assert "SLLM4CTR head items 0 0.000" in lines and "SLLM4CTR tail items 2 1.000" in lines


def test_unknown_dataset_is_exit_2_with_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out = run(["data", "prepare", "movielens-1n", "--cache", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and out == ""
    assert err.startswith("ctrbench: error: unknown datasets 'movielens-1n' (did you mean 'movielens-1m'")
    assert err.count("\n") == 1


def test_missing_raw_files_are_exit_2_naming_the_dataset_and_files(capsys: pytest.CaptureFixture[str],
                                                                   tmp_path: Path) -> None:
    code, _ = run(["data", "info", "criteo", "--source", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"ctrbench: error: criteo: raw files not found: put train.txt in {tmp_path} ")
    assert err.count("\n") == 1


@pytest.mark.parametrize(("args", "message"), [
    (["--set", "history_length"], "ctrbench: error: --set expects KEY=VALUE, got 'history_length'"),
    (["--set", "histroy_length=3"], "ctrbench: error: datasets 'movielens-1m': unknown config key 'histroy_length' "
                                    "(did you mean 'history_length'?)"),
    (["--set", "history_length=-1"], "ctrbench: error: movielens-1m: history_length must be a non-negative integer, "
                                     "got -1"),
])
def test_bad_config_is_exit_2(args: list[str], message: str, ml1m: Path, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = run(["data", "prepare", "movielens-1m", "--source", str(ml1m), "--cache", str(tmp_path), *args])
    assert code == 2
    assert capsys.readouterr().err.startswith(message)


def test_a_dataset_without_users_shows_no_buckets(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "train.txt").write_text("".join(f"{k % 2}\t{k}" + "\t" * 12 + "\t68fd1e64" * 26 + "\n" for k in range(20)))
    code, out = run(["data", "info", "criteo", "--source", str(raw), "--cache", str(tmp_path / "c"),
                     "--set", "min_count=1"])
    assert code == 0
    assert "(none: the dataset has no user and item fields)" in out
    assert " I1 " in out and " C26 " in out
