"""Hostile or careless input: names that would leave the store, YAML alias bombs, out-of-range values,
non-UTF-8 suite files, and preprocessed arrays changed or left half-written on disk."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import stat
import textwrap
import time
import tracemalloc
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml

from ctrbench import yaml_safe
from ctrbench.data import cache
from ctrbench.data.configtypes import check_config_types, typed
from ctrbench.data.sources import cached_sha256
from ctrbench.errors import CtrbenchError, DataError, SuiteError
from ctrbench.names import InvalidName, check_slug
from ctrbench.plugins import load_plugins
from ctrbench.runner import plan
from ctrbench.suite import _key_lines, load_suite
from ctrbench_datasets.base import RawDataset
from ctrbench_datasets.synthetic import Synthetic

SUITES = Path(__file__).parent.parent / "suites"

BASE = """\
schema_version: 1
name: t
datasets: [synthetic]
seeds: [0]
defaults:
  ctr: lr
  train: {epochs: 1}
"""


def write(tmp_path: Path, text: str, name: str = "suite.yaml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text), encoding="utf-8")
    return p


def one_line_error(path: Path, match: str, overrides: list[str] | None = None) -> str:
    with pytest.raises(SuiteError, match=match) as info:
        load_suite(path, overrides)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


# -- names --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", [
    "../../escape",        # up and out of the store
    "/tmp/absolute",       # an absolute path
    '"a\\0b"',             # a NUL byte (YAML escape)
    "_private",            # the store's own entries start with _
    "..",
    ".hidden",
    '"a/b"',
    '"C:\\\\x"',
    '"two\\nlines"',
    "''",
], ids=["up-and-out", "absolute", "nul", "underscore", "dotdot", "hidden", "slash", "drive", "newline", "empty"])
def test_suite_names_that_would_leave_the_store_are_refused(tmp_path: Path, name: str) -> None:
    path = write(tmp_path, BASE.replace("name: t", f"name: {name}"))
    one_line_error(path, r"suite.yaml:2: key 'name': a suite name ")


def test_set_name_cannot_escape_either(tmp_path: Path) -> None:
    path = write(tmp_path, BASE)
    one_line_error(path, r"key 'name': a suite name may only hold .*'\.\./x'", ["name=../x"])
    one_line_error(path, r"key 'name': a suite name must not start with '_'", ["name=_x"])
    assert load_suite(path, ["name=fine-name_2.0"]).name == "fine-name_2.0"


def test_check_slug() -> None:
    for good in ("quickstart", "ctr_zoo", "a.b-c_d", "0", "x" * 128, "-x"):
        assert check_slug(good, "name") == good
    for bad, why in [("", "must not be empty"), ("x" * 129, "at most 128"), ("a b", "may only hold"),
                     ("a\0b", "may only hold"), ("..", "must not start with '.'"), (".", "must not start"),
                     ("_a", "must not start with '_'"), (7, "must be a string"), ("é", "may only hold")]:
        with pytest.raises(InvalidName, match=why) as info:
            check_slug(bad, "the run id")
        assert isinstance(info.value, ValueError) and isinstance(info.value, CtrbenchError)
        assert str(info.value).startswith("the run id ") and "\n" not in str(info.value)


# -- YAML that cannot bomb ----------------------------------------------------------------------------------

def billion_laughs() -> str:
    """The classic: 9 levels of 9 aliases each, 9^9 (387 million) strings from under 400 bytes."""
    lines = ["a: &a [x,x,x,x,x,x,x,x,x]"]
    for prev, cur in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{cur}: &{cur} [" + ",".join(f"*{prev}" for _ in range(9)) + "]")
    return "schema_version: 1\n" + "\n".join(lines) + "\n"


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Abort the block with TimeoutError after ``seconds`` (so a regression fails fast instead of eating RAM)."""
    def expire(signum: int, frame: object) -> None:
        raise TimeoutError(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def test_alias_bomb_is_refused_fast_and_small(tmp_path: Path) -> None:
    text = billion_laughs()
    assert len(text) < 420
    path = write(tmp_path, text)
    tracemalloc.start()
    try:
        start = time.perf_counter()
        with deadline(3.0), pytest.raises(SuiteError, match=r"suite.yaml:\d+: refused YAML: aliases expand") as info:
            load_suite(path)
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < 1.0
    assert peak < 100 * 2**20
    assert "\n" not in str(info.value)


def flow_bomb(levels: int) -> str:
    """The same bomb as one flow sequence, as a ``--set`` value could carry it."""
    names = "abcdefghi"[:levels]
    items = ["&a [x,x,x,x,x,x,x,x,x]"] + [f"&{cur} [" + ",".join([f"*{prev}"] * 9) + "]"
                                          for prev, cur in zip(names, names[1:], strict=False)]
    return "[" + ", ".join(items) + "]"


def test_alias_bomb_in_a_set_value_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, BASE)
    with deadline(3.0), pytest.raises(SuiteError, match=r"^--set 'store=.*: value is not valid YAML: aliases expand"):
        load_suite(path, ["store=" + flow_bomb(9)])
    with pytest.raises(SuiteError, match=r"key 'store': expected a directory path, got list"):
        load_suite(path, ["store=" + flow_bomb(3)])  # 9^3 values: an ordinary (wrong-typed) value


@pytest.mark.parametrize("text, problem", [
    ("a: &a [*a]\n", "recursive alias"),
    ("a: &a {b: *a}\n", "recursive alias"),
    ("a: " + "[" * 100 + "]" * 100 + "\n", "nested deeper than 64 levels"),
    ("a: " + "[" * 1500 + "]" * 1500 + "\n", "nested"),
    ("a: &a " + "y" * 10_000 + "\nb: [" + ",".join(["*a"] * 1000) + "]\n", "aliases expand"),  # 10 MB of aliases
], ids=["recursive-list", "recursive-map", "deep", "deeper-than-python", "long-string-aliases"])
def test_yaml_shapes_that_are_refused(text: str, problem: str) -> None:
    with deadline(3.0), pytest.raises(yaml_safe.YAMLLimitError, match=problem) as info:
        yaml_safe.safe_load(text)
    assert info.value.problem_mark is not None


def test_ordinary_anchors_aliases_and_merge_keys_still_work() -> None:
    text = "base: &b {x: 1, y: [1, 2]}\nuse: *b\nmerged: {<<: *b, y: 3}\nmany: [" + ",".join(["*b"] * 500) + "]\n"
    data = yaml_safe.safe_load(text)
    assert data["use"] == {"x": 1, "y": [1, 2]}
    assert data["merged"] == {"x": 1, "y": 3}
    assert len(data["many"]) == 500
    assert yaml_safe.safe_load("") is None


def test_key_lines_do_not_expand_aliases() -> None:
    # 5 levels: 9^5 = 59,049 values, within the expansion budget, so it loads; the line map stays small
    text = "\n".join(billion_laughs().splitlines()[:6]) + "\n"
    node = yaml_safe.compose(text)
    lines = _key_lines(node)
    assert len(lines) < 100
    assert lines["e"] == 6 and lines["a[0]"] == 2


def test_bad_scalars_are_one_line_errors(tmp_path: Path) -> None:
    one_line_error(write(tmp_path, BASE + "description: 2001-13-45\n"),
                   r"suite.yaml:8: malformed YAML: invalid timestamp")
    one_line_error(write(tmp_path, BASE.replace("seeds: [0]", "seeds: [" + "9" * 5000 + "]")),
                   r"suite.yaml:4: malformed YAML: invalid int value")


def test_shipped_suites_with_anchors_still_load() -> None:
    plugins = load_plugins()
    paths = sorted(SUITES.glob("*.yaml"))
    with_anchors = [p for p in paths if "<<: *" in p.read_text() or "&" in p.read_text()]
    assert len(with_anchors) >= 5
    for path in paths:
        assert plan(load_suite(path), plugins), path
    compat = load_suite(SUITES / "compat.yaml")
    methods = compat.grid["method"]
    assert {m["finetune"] for m in methods if isinstance(m, dict) and "finetune" in m} == {"without_plm", "with_plm"}
    assert all(m["name"] == "clickprompt" for m in methods if isinstance(m, dict) and "finetune" in m)


def test_a_forced_key_cannot_come_from_the_file(tmp_path: Path) -> None:
    one_line_error(write(tmp_path, BASE + "_forced: {ctr.x: 1}\n"), r"suite.yaml:8: key '_forced': unknown key")


# -- values -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seeds, key", [("[-1]", r"seeds\[0\]"), ("[0, 4294967296]", r"seeds\[1\]"),
                                        ("[100000000000000000000000000000]", r"seeds\[0\]")])
def test_seeds_out_of_numpys_range(tmp_path: Path, seeds: str, key: str) -> None:
    path = write(tmp_path, BASE.replace("seeds: [0]", f"seeds: {seeds}"))
    one_line_error(path, rf"suite.yaml:4: key '{key}': must be in 0 \.\. 2\*\*32 - 1")
    assert load_suite(write(tmp_path, BASE.replace("seeds: [0]", "seeds: [0, 4294967295]"), "ok.yaml")).seeds == (
        0, 4294967295)


@pytest.mark.parametrize("train, key, message", [
    ("{max_samples: 0}", "defaults.train.max_samples", "must be at least 1 or null, got 0"),
    ("{max_samples: -3}", "defaults.train.max_samples", "must be at least 1 or null, got -3"),
    ("{eval_max_samples: 1}", "defaults.train.eval_max_samples", "must be at least 2 or null, got 1"),
    ("{lr: .nan}", "defaults.train.lr", "must be a finite number"),
])
def test_train_values_out_of_range(tmp_path: Path, train: str, key: str, message: str) -> None:
    path = write(tmp_path, BASE.replace("train: {epochs: 1}", f"train: {train}"))
    one_line_error(path, rf"suite.yaml:7: key '{key}': {message}")


def test_train_values_in_grids_and_overrides_are_checked_too(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + "grid:\n  train.max_samples: [100, 0]\n")
    one_line_error(path, r"suite.yaml:9: key 'grid.train.max_samples\[1\]': must be at least 1")
    one_line_error(write(tmp_path, BASE, "b.yaml"), r"key 'defaults.train.eval_max_samples': must be at least 2",
                   ["train.eval_max_samples=1"])
    ok = load_suite(write(tmp_path, BASE.replace("{epochs: 1}", "{max_samples: 1000000000, eval_max_samples: 2}"),
                          "ok.yaml"))  # larger than any split: all rows
    assert ok.defaults["train"]["max_samples"] == 10**9
    assert load_suite(write(tmp_path, BASE.replace("{epochs: 1}", "{max_samples: null}"), "n.yaml"))


def test_non_utf8_suite_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(BASE.replace("name: t", "name: caf\xe9").encode("latin-1"))
    one_line_error(path, r"latin1.yaml:2: not UTF-8 text \(byte 0xe9 at offset \d+\)")
    bom = tmp_path / "bom.yaml"
    bom.write_bytes(b"\xef\xbb\xbf" + BASE.encode())
    assert load_suite(bom).name == "t"


def test_dataset_config_types_are_named() -> None:
    create = typed(Synthetic, "synthetic")
    with pytest.raises(DataError, match=r"^synthetic: num_samples must be an integer, got str 'abc'$"):
        create(num_samples="abc")
    with pytest.raises(DataError, match=r"^synthetic: memmap must be true or false, got int 1$"):
        create(memmap=1)
    with pytest.raises(DataError, match=r"synthetic: seed must be in 0 \.\. 2\*\*32 - 1"):
        create(seed=10**29)
    assert isinstance(create(num_samples=100.0, interaction_strength=1), Synthetic)
    registry = load_plugins().registry("datasets")
    with pytest.raises(DataError, match=r"^movielens-100k: split must be a list of 3 numbers, got str 'abc'$"):
        registry.get("movielens-100k").create(split="abc")
    with pytest.raises(DataError, match=r"^amazon-toys: kcore must be an integer, got list \[5\]$"):
        registry.get("amazon-toys").create(kcore=[5])
    check_config_types("x", Synthetic, {"seed": 4294967295, "num_samples": 20})


# -- integrity of the preprocessed arrays --------------------------------------------------------------------

def _cached_dir(root: Path) -> Path:
    [d] = [p for p in (root / "preprocessed").iterdir() if not p.name.startswith(".")]
    return d


def _counting_build(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    original = Synthetic.build

    def build(self: Synthetic, workdir: Path) -> object:
        calls.append(1)
        return original(self, workdir)

    monkeypatch.setattr(Synthetic, "build", build)
    return calls


@pytest.mark.parametrize("memmap", [False, True])
def test_flipped_labels_in_a_cached_array_are_detected_and_rebuilt(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, memmap: bool) -> None:
    calls = _counting_build(monkeypatch)
    gen = Synthetic(num_samples=3000, seed=5, memmap=memmap, history_length=0)
    first = gen.load(tmp_path)
    y0 = np.array(first.y)
    del first
    path = _cached_dir(tmp_path) / "y.npy"
    size = path.stat().st_size
    flipped = np.load(path, mmap_mode="r+")
    flipped[:] = 1 - flipped  # every label flipped: same size, same header, same fingerprint
    flipped.flush()
    del flipped
    assert path.stat().st_size == size
    with caplog.at_level(logging.WARNING, logger="ctrbench.data.cache"):
        again = gen.load(tmp_path)
    assert len(calls) == 2
    np.testing.assert_array_equal(np.asarray(again.y), y0)
    assert any("y.npy" in r.getMessage() and "checksum" in r.getMessage() for r in caplog.records)
    assert again.fingerprint == gen.fingerprint()


def test_a_directory_without_meta_json_is_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    calls = _counting_build(monkeypatch)
    gen = Synthetic(num_samples=500, history_length=0)
    y0 = np.array(gen.load(tmp_path).y)
    d = _cached_dir(tmp_path)
    (d / "meta.json").unlink()  # as a crash or a hand-made copy leaves it
    (d / "X.npy").write_bytes(b"half")
    with caplog.at_level(logging.WARNING, logger="ctrbench.data.cache"):
        data = gen.load(tmp_path)
    assert len(calls) == 2
    np.testing.assert_array_equal(np.asarray(data.y), y0)
    assert (d / "meta.json").is_file()
    assert any("meta.json is missing" in r.getMessage() for r in caplog.records)
    assert [p.name for p in (tmp_path / "preprocessed").iterdir()] == [d.name]  # nothing left aside


def test_meta_without_checksums_or_a_missing_array_is_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _counting_build(monkeypatch)
    gen = Synthetic(num_samples=500, history_length=0)
    gen.load(tmp_path)
    d = _cached_dir(tmp_path)
    meta = json.loads((d / "meta.json").read_text())
    assert set(meta["arrays"]) >= {"X", "y", "ts", "user", "item", "split_train"}
    del meta["arrays"]  # as an older ctrbench wrote it
    (d / "meta.json").write_text(json.dumps(meta))
    gen.load(tmp_path)
    (d / "split_test.npy").unlink()
    gen.load(tmp_path)
    assert len(calls) == 3
    gen.load(tmp_path)
    assert len(calls) == 3


def test_checksums_are_computed_once_per_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gen = Synthetic(num_samples=500, history_length=0)
    gen.load(tmp_path)  # writes the arrays and remembers their checksums
    hashed: list[int] = []
    original = cache.zlib.crc32

    def crc32(data: bytes, value: int = 0) -> int:
        hashed.append(len(data))
        return original(data, value)

    monkeypatch.setattr(cache.zlib, "crc32", crc32)
    for _ in range(3):
        gen.load(tmp_path)
    assert hashed == []
    monkeypatch.setattr(cache, "_VERIFIED", {})  # a new process
    gen.load(tmp_path)
    assert sum(hashed) == sum(p.stat().st_size for p in _cached_dir(tmp_path).glob("*.npy"))


# -- permissions follow the umask ---------------------------------------------------------------------------

@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


class _Zipped(RawDataset):
    name = "zipped"
    files = ("a.txt",)
    archive = "a.zip"


@pytest.mark.parametrize("mask, dirs, files", [(0o022, 0o755, 0o644), (0o002, 0o775, 0o664)])
def test_cache_files_and_dirs_follow_the_umask(tmp_path: Path, mask: int, dirs: int, files: int) -> None:
    with umask(mask):
        Synthetic(num_samples=500, history_length=0).load(tmp_path / "c")
        d = _cached_dir(tmp_path / "c")
        assert _mode(d) == dirs
        assert {_mode(p) for p in d.iterdir()} == {files}
        raw = tmp_path / "raw.txt"
        raw.write_text("x")
        cached_sha256(raw, tmp_path / "c")
        assert _mode(tmp_path / "c" / "checksums.json") == files
        with zipfile.ZipFile(tmp_path / "a.zip", "w") as z:
            z.writestr("inner/a.txt", "hello")
        _Zipped()._unpack(tmp_path / "a.zip", tmp_path / "c" / "raw" / "zipped")
        assert _mode(tmp_path / "c" / "raw" / "zipped" / "a.txt") == files


def test_yaml_error_type_is_a_yaml_error() -> None:
    assert issubclass(yaml_safe.YAMLLimitError, yaml.YAMLError)
