"""Model folders in the Hugging Face layout: config.json + model.safetensors + tokenizer files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from infir.model.llama import Llama, LlamaConfig
from infir.utils.io import atomic_path


def _state_for_saving(model: Llama) -> dict[str, torch.Tensor]:
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight", None)  # transformers re-ties it from embed_tokens
    return state


def save_model(model: Llama, out_dir: str | Path, tokenizer: Any = None, dtype: torch.dtype | None = None,
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
        eos = cfg["eos_token_id"]
        gen = {"bos_token_id": cfg["bos_token_id"], "eos_token_id": eos, "do_sample": False}
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))
            eot = tokenizer.convert_tokens_to_ids("<|eot_id|>") if hasattr(tokenizer, "convert_tokens_to_ids") else None
            if isinstance(eot, int) and eot >= 0 and eot != tokenizer.unk_token_id:
                ids = [eos] if isinstance(eos, int) else list(eos)
                gen["eos_token_id"] = sorted(set(ids + [eot]))
        (tmp / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n")
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text)
    return out_dir


def load_config(path: str | Path) -> LlamaConfig:
    return LlamaConfig.from_hf_dict(json.loads((Path(path) / "config.json").read_text()))


def load_model(path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> Llama:
    """Load an infir or Hugging Face Llama folder (single or sharded safetensors)."""
    path = Path(path)
    cfg = load_config(path)
    with torch.device("meta"):
        model = Llama(cfg)
    state: dict[str, torch.Tensor] = {}
    index = path / "model.safetensors.index.json"
    files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.exists() else ["model.safetensors"]
    for name in files:
        state.update(load_file(str(path / name), device=str(device)))
    if cfg.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    missing = [m for m in missing if not (cfg.tie_word_embeddings and m == "lm_head.weight")]
    if missing or unexpected:
        raise ValueError(f"{path}: checkpoint does not match the config: missing={missing} unexpected={unexpected}")
    if cfg.tie_word_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
    model.inv_freq = rope_buffer(model, device)
    if dtype is not None:
        model = model.to(dtype)
    return model.to(device).eval()


def rope_buffer(model: Llama, device: str | torch.device) -> torch.Tensor:
    from infir.model.llama import rope_inv_freq

    return rope_inv_freq(model.config).to(device)
