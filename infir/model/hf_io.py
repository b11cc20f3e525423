"""Model folders in the Hugging Face layout: config.json + model.safetensors + tokenizer files.

Any architecture of the registry (`infir.model.registry`): the folder's `model_type` picks it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from infir.model import registry
from infir.utils.io import atomic_path


def _state_for_saving(model: Any) -> dict[str, torch.Tensor]:
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight", None)  # transformers re-ties it from embed_tokens
    return state


def generation_eos(config: Any, tokenizer: Any) -> int | list[int] | None:
    """generation_config.json's eos_token_id: the config's, plus every end token the tokenizer has
    (end of text and end of turn, of whichever family the tokenizer is)."""
    eos = config.eos_token_id
    ids = [] if eos is None else ([eos] if isinstance(eos, int) else list(eos))
    if tokenizer is not None and hasattr(tokenizer, "get_vocab"):
        ids += registry.token_ids(tokenizer, registry.end_of_sequence_tokens())
    ids = sorted(set(ids))
    return None if not ids else (ids[0] if len(ids) == 1 else ids)


def save_model(model: Any, out_dir: str | Path, tokenizer: Any = None, dtype: torch.dtype | None = None,
               extra_files: dict[str, str] | None = None) -> Path:
    """Write an HF-compatible model folder atomically (temp folder, then rename)."""
    out_dir = Path(out_dir)
    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        state = _state_for_saving(model)
        if dtype is not None:
            state = {k: v.to(dtype) for k, v in state.items()}
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        cfg = model.config.to_hf_dict()
        cfg["torch_dtype"] = str(dtype or next(iter(state.values())).dtype).replace("torch.", "")
        (tmp / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
        gen: dict[str, Any] = {"bos_token_id": cfg["bos_token_id"], "eos_token_id": cfg["eos_token_id"],
                               "do_sample": False}
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))
            gen["eos_token_id"] = generation_eos(model.config, tokenizer)
        (tmp / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n")
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text)
    return out_dir


def read_config_json(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"{path}: not a model folder (no config.json)")
    return json.loads((path / "config.json").read_text())


def load_config(path: str | Path) -> Any:
    """The folder's config as its architecture's config class (unsupported model_type: a clear error)."""
    return registry.config_from_hf(read_config_json(path), where=str(path))


def load_model(path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> Any:
    """Load an infir or Hugging Face model folder of any registered architecture (single or sharded safetensors)."""
    path = Path(path)
    cfg = load_config(path)
    index = path / "model.safetensors.index.json"
    files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.exists() else ["model.safetensors"]
    missing_files = [name for name in files if not (path / name).exists()]
    if missing_files:
        raise FileNotFoundError(f"{path}: weight files missing: {missing_files}")
    state: dict[str, torch.Tensor] = {}
    for name in files:
        state.update(load_file(str(path / name), device=str(device)))
    model = registry.model_from_state(cfg, state, where=str(path), device=device)
    if dtype is not None:
        model = model.to(dtype)
    return model.to(device).eval()
