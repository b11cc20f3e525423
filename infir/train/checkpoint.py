"""Training checkpoints: model, optimizer, scheduler, data loader and RNG state in one folder.

Layout: <root>/step_00000042/{model.pt, optimizer.pt, trainer.pt}. Folders are written to a temp
name and renamed (atomic); only the newest `keep` are kept. States are gathered to full (unsharded)
tensors on rank 0, so a checkpoint resumes with any number of ranks.
"""

from __future__ import annotations

import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_state_dict,
)

from infir.train.distributed import DistEnv, barrier
from infir.utils.io import atomic_path
from infir.utils.log import get_logger

log = get_logger(__name__)
STEP_DIR = re.compile(r"^step_(\d+)$")


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def list_checkpoints(root: Path) -> list[tuple[int, Path]]:
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := STEP_DIR.match(p.name))]
    return sorted(found)


def latest_checkpoint(root: Path) -> Path | None:
    found = list_checkpoints(root)
    return found[-1][1] if found else None


def save_checkpoint(root: Path, step: int, module: nn.Module, optimizer: torch.optim.Optimizer,
                    trainer_state: dict[str, Any], env: DistEnv, keep: int) -> Path:
    """Collective: every rank calls it; rank 0 writes."""
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    model_state, optim_state = get_state_dict(module, optimizer, options=options)
    rngs: list[Any] = [rng_state()]
    if env.distributed:
        rngs = [None] * env.world_size
        dist.all_gather_object(rngs, rng_state())
    path = root / f"step_{step:08d}"
    if env.is_main:
        with atomic_path(path) as tmp:
            tmp.mkdir(parents=True)
            torch.save(model_state, tmp / "model.pt")
            torch.save(optim_state, tmp / "optimizer.pt")
            torch.save({**trainer_state, "step": step, "rng": rngs}, tmp / "trainer.pt")
        for _, old in list_checkpoints(root)[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
        log.info("checkpoint step %d -> %s", step, path)
    barrier(env)
    return path


def load_checkpoint(path: Path, module: nn.Module, optimizer: torch.optim.Optimizer,
                    env: DistEnv) -> dict[str, Any]:
    """Restore model and optimizer (every rank reads the full state) and this rank's RNG state."""
    model_state = torch.load(path / "model.pt", map_location="cpu", weights_only=False)
    optim_state = torch.load(path / "optimizer.pt", map_location="cpu", weights_only=False)
    set_state_dict(module, optimizer, model_state_dict=model_state, optim_state_dict=optim_state,
                   options=StateDictOptions(full_state_dict=True))
    trainer = torch.load(path / "trainer.pt", map_location="cpu", weights_only=False)
    rngs = trainer.pop("rng")
    set_rng_state(rngs[env.rank] if env.rank < len(rngs) else rngs[0])
    log.info("resumed from %s (step %d)", path, trainer["step"])
    return trainer


def full_model_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """Unsharded CPU state dict of `module` (collective under FSDP; empty on ranks other than 0)."""
    return get_model_state_dict(module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
