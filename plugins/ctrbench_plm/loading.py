"""What every PLM loader does around ``from_pretrained``: resolve the source, keep transformers quiet, and turn
its errors into one-line ``DataError``s that name the PLM (masked and causal LMs alike)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ctrbench.errors import DataError


def resolve_source(source: str | Path, name: str, local: bool) -> str:
    """The string to pass to ``from_pretrained``; a local folder must exist (checked here, before transformers)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # ctrbench draws its own progress; transformers' bars would interleave
    src = str(Path(source).expanduser()) if local else str(source)
    if local and not Path(src).is_dir():
        raise DataError(f"PLM '{name}': local model folder {src} does not exist (expected a folder with "
                        "config.json, the weights and the tokenizer files, as save_pretrained writes)")
    return src


@contextmanager
def loading_errors(name: str, src: str, local: bool) -> Iterator[None]:
    """Re-raise transformers' OSError/ValueError as one line naming the PLM (with the offline hint for hub ids)."""
    try:
        yield
    except (OSError, ValueError) as exc:
        hint = "" if local else "; without internet, pass path= a local folder laid out like the hub's"
        reason = " ".join(str(exc).split())  # transformers' messages span lines; the CLI shows one
        raise DataError(f"PLM '{name}': could not load {src}: {reason}{hint}") from exc


def load_pretrained(auto_model: Any, source: str | Path, *, name: str, local: bool,
                    dtype: str = "float32") -> tuple[Any, Any, dict[str, Any]]:
    """``(model, tokenizer, loading_info)``: ``auto_model.from_pretrained`` (e.g. ``AutoModelForCausalLM``) and
    ``AutoTokenizer`` from a folder laid out like the hub's (``local=True``: never a network call) or a hub id;
    the model in eval mode."""
    import torch
    from transformers import AutoTokenizer

    src = resolve_source(source, name, local)
    with loading_errors(name, src, local):
        tokenizer = AutoTokenizer.from_pretrained(src, local_files_only=local)
        model = auto_model.from_pretrained(src, local_files_only=local, dtype=getattr(torch, dtype))
    model.eval()
    return model, tokenizer, {"source": src, "dtype": dtype}
