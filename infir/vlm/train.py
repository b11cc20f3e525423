"""Train one curriculum stage: tune types per component, AdamW, warmup + cosine, token-level loss.

A compact loop of its own (VLM batches carry images, so the text trainer's packed-shard loop does
not fit); it reuses the trainer's schedule and chunked loss. The loss of an optimizer step is the sum over all its micro-batches' labelled tokens
divided by their total count (the project's token-level normalisation).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import torch

from infir.train.loop import build_optimizer
from infir.utils.log import get_logger, progress
from infir.vlm.config import StageConfig
from infir.vlm.dataset import ImageCache
from infir.vlm.model import VisionLanguageModel
from infir.vlm.processor import collate

log = get_logger(__name__)


def apply_tune_types(model: VisionLanguageModel, stage: StageConfig) -> dict[str, int]:
    """Freeze / unfreeze each component; returns trainable parameter counts per component."""
    counts = {}
    for name, module in model.components().items():
        train = getattr(stage, name) == "full"
        for p in module.parameters():
            p.requires_grad_(train)
        module.train(train)
        counts[name] = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return counts


def stage_lr(step: int, total: int, stage: StageConfig) -> float:
    """The stage's learning rate at `step` (the trainer's schedule part; default: warmup then cosine)."""
    return stage.schedule.lr_at(step, stage.optimizer.lr, total)


def _micro_batches(examples: list[dict], batch_size: int, rng: random.Random, epochs: float) -> list[list[dict]]:
    order: list[dict] = []
    full, part = int(epochs), epochs - int(epochs)
    for _ in range(full):
        order += rng.sample(examples, len(examples))
    if part > 0:
        order += rng.sample(examples, int(round(part * len(examples))))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def train_stage(model: VisionLanguageModel, examples: list[dict], stage: StageConfig, cache: ImageCache,
                pad_id: int, device: torch.device, seed: int = 0, amp_dtype: torch.dtype | None = None,
                log_every: int = 20, evaluate: Callable[[], float] | None = None) -> dict[str, Any]:
    """Run one stage in place; returns its summary (steps, trainable counts, losses, seconds).

    With `stage.eval_every` and an `evaluate` callback (a held-out score, e.g. grounding accuracy), the
    score is logged every that many steps and at the end, and kept in the summary as `eval_curve`.
    """
    trainable = apply_tune_types(model, stage)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"stage {stage.name}: every component is frozen")
    opt = build_optimizer(params, stage.optimizer, device)
    micro = _micro_batches(examples, stage.batch_size, random.Random(seed), stage.epochs)
    steps = math.ceil(len(micro) / stage.grad_accum)
    log.info("stage %s: %d examples, %d optimizer steps, trainable %s", stage.name, len(examples), steps,
             {k: f"{v:,}" for k, v in trainable.items()})
    autocast = (torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext())
    losses: list[float] = []
    eval_curve: list[tuple[int, float]] = []
    start = time.perf_counter()
    with progress() as bar:
        task = bar.add_task(stage.name, total=steps)
        for step in range(steps):
            group = micro[step * stage.grad_accum : (step + 1) * stage.grad_accum]
            batches = [collate([{**e, "pixel_values": cache.stack(e["images"])} for e in mb], pad_id) for mb in group]
            n_tokens = sum(int((b["labels"] != -100).sum()) for b in batches)
            total = 0.0
            for b in batches:
                b = {k: v.to(device, non_blocking=True) for k, v in b.items()}
                with autocast:
                    loss_sum, _ = model.loss(b)
                (loss_sum / max(1, n_tokens)).backward()
                total += float(loss_sum.detach())
            if stage.optimizer.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, stage.optimizer.grad_clip)
            for g in opt.param_groups:
                g["lr"] = stage_lr(step, steps, stage)
            opt.step()
            opt.zero_grad(set_to_none=True)
            losses.append(total / max(1, n_tokens))
            if (step + 1) % log_every == 0 or step == steps - 1:
                log.info("stage %s step %d/%d loss %.4f lr %.2e", stage.name, step + 1, steps,
                         sum(losses[-log_every:]) / len(losses[-log_every:]), opt.param_groups[0]["lr"])
            if evaluate is not None and stage.eval_every and ((step + 1) % stage.eval_every == 0 or step == steps - 1):
                eval_curve.append((step + 1, _score(model, evaluate)))
                log.info("stage %s step %d/%d held-out score %.3f", stage.name, step + 1, steps, eval_curve[-1][1])
            bar.advance(task)
    for module in model.components().values():
        module.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    seconds = time.perf_counter() - start
    head = losses[: max(1, len(losses) // 10)]
    tail = losses[-max(1, len(losses) // 10):]
    every = max(1, steps // 200)  # at most ~200 points of the loss curve (means over `every` steps)
    curve_loss = [(min(i + every, steps), sum(losses[i : i + every]) / len(losses[i : i + every]))
                  for i in range(0, steps, every)]
    return {"stage": stage.name, "steps": steps, "examples": len(examples), "trainable": trainable,
            "loss_first": sum(head) / len(head), "loss_last": sum(tail) / len(tail), "seconds": round(seconds, 1),
            "loss_curve": curve_loss,
            **({"eval_curve": eval_curve} if eval_curve else {})}


def _score(model: VisionLanguageModel, evaluate: Callable[[], float]) -> float:
    """Run `evaluate` in eval mode, then put back each component's train/eval mode."""
    modes = {name: module.training for name, module in model.components().items()}
    model.eval()
    try:
        with torch.no_grad():
            return float(evaluate())
    finally:
        for name, module in model.components().items():
            module.train(modes[name])
