"""Write the trained weights as a Hugging Face model folder (gathered from every rank under FSDP)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from infir.model.hf_io import save_model
from infir.model.registry import model_from_state
from infir.train.checkpoint import full_model_state
from infir.train.distributed import DistEnv, barrier
from infir.utils.log import get_logger

log = get_logger(__name__)


def export_model(module: torch.nn.Module, config: Any, out_dir: Path, tokenizer: Any, env: DistEnv) -> None:
    """Gather the trained weights (collective) and write an HF folder from rank 0."""
    state = full_model_state(module)
    if env.is_main:
        prefix = "model."
        state = {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state.items()}
        try:
            model = model_from_state(config, state, where="trained state", device="cpu")
        except ValueError as e:
            raise RuntimeError(str(e)) from e
        save_model(model, out_dir, tokenizer=tokenizer)
        log.info("saved model to %s", out_dir)
    barrier(env)
