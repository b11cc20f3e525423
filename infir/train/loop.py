"""The one training loop: pretrain, anneal, SFT and VLM stages all run through `train()`.

It takes a model and any iterable of micro-batches that follow the batch contract (input_ids,
labels, position_ids, document_ids; labels -100 = no loss). Loss is summed per token and divided by
the number of label tokens of the whole optimizer step over all micro-batches and ranks.
If the iterable has `state_dict()` / `load_state_dict()` its state is checkpointed too.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from infir.model.base import is_causal_lm
from infir.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from infir.train.config import OptimizerConfig, RuntimeConfig, TrainConfig
from infir.train.distributed import (
    DistEnv,
    all_reduce_sum,
    apply_activation_checkpointing,
    apply_fsdp,
    compile_layers,
    init_distributed,
)
from infir.train.loss import IGNORE_INDEX, linear_cross_entropy
from infir.train.metrics import MetricsLogger, truncate_metrics
from infir.utils.log import get_logger, progress

log = get_logger(__name__)
Evaluate = Callable[[nn.Module, int], dict[str, float]]


class CausalLMLoss(nn.Module):
    """A causal LM (`infir.model.base.CausalLM`, any architecture) + chunked linear cross-entropy:
    forward(**batch) -> (loss_sum, ce_sum).

    Any module with this forward (and a `blocks()` for sharding) can be trained by `train()`.
    """

    def __init__(self, model: nn.Module, z_loss: float = 0.0, chunk_size: int = 8192,
                 compute_dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.model = model
        self.z_loss, self.chunk_size, self.compute_dtype = z_loss, chunk_size, compute_dtype

    def blocks(self) -> nn.ModuleList:
        return self.model.layers

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor, position_ids: torch.Tensor | None = None,
                document_ids: torch.Tensor | None = None, **_: Any) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.model(input_ids, position_ids=position_ids, document_ids=document_ids, return_hidden=True)
        return linear_cross_entropy(hidden, self.model.lm_head.weight, labels, z_loss=self.z_loss,
                                    chunk_size=self.chunk_size, compute_dtype=self.compute_dtype)


def use_bf16(runtime: RuntimeConfig, device: torch.device) -> bool:
    return runtime.dtype == "bf16" or (runtime.dtype == "auto" and device.type == "cuda")


def build_optimizer(params: Iterable[nn.Parameter], cfg: OptimizerConfig, device: torch.device,
                    distributed: bool = False) -> torch.optim.Optimizer:
    """AdamW; no weight decay on norms and biases (1-D params); fused kernel on a single GPU."""
    decay, no_decay = [], []
    for p in params:
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # fused kernel for plain tensors on one GPU; FSDP2's DTensor params keep torch's default path
    fused = device.type == "cuda" and not distributed
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, fused=fused or None)


def prepare_module(module: nn.Module, cfg: TrainConfig, env: DistEnv) -> nn.Module:
    """Move to the device, then activation checkpointing, compile, FSDP2 (in that order)."""
    module.to(env.device)
    blocks = module.blocks() if hasattr(module, "blocks") else None
    if blocks is not None and cfg.runtime.activation_checkpointing:
        apply_activation_checkpointing(blocks)
    if blocks is not None and cfg.runtime.compile:
        compile_layers(blocks)
    if env.distributed:
        apply_fsdp(module, blocks if blocks is not None else nn.ModuleList(), env,
                   bf16=use_bf16(cfg.runtime, env.device))
    return module


def _to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def train(
    model: nn.Module,
    batches: Iterable[dict[str, torch.Tensor]],
    cfg: TrainConfig,
    output: str | Path,
    *,
    total_steps: int | None = None,
    evaluate: Evaluate | None = None,
    env: DistEnv | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Train `model` on `batches`; resumes from output/checkpoints when one exists.

    Returns the prepared training module (a CausalLMLoss around the model) and a summary dict.
    """
    output = Path(output)
    env = env or init_distributed()
    torch.manual_seed(cfg.runtime.seed)
    total_steps = total_steps or cfg.total_steps()
    accum = cfg.grad_accum_steps(env.world_size)
    bf16 = use_bf16(cfg.runtime, env.device)
    if is_causal_lm(model):
        model = CausalLMLoss(model, cfg.z_loss, cfg.runtime.loss_chunk_size, torch.bfloat16 if bf16 else None)
    module = prepare_module(model, cfg, env)
    module.train()
    optimizer = build_optimizer(module.parameters(), cfg.optimizer, env.device, env.distributed)
    ckpt_root = output / "checkpoints"
    start_step, tokens_seen = 0, 0
    resume = latest_checkpoint(ckpt_root)
    if resume is not None:
        state = load_checkpoint(resume, module, optimizer, env)
        start_step, tokens_seen = state["step"], state.get("tokens", 0)
        if hasattr(batches, "load_state_dict") and state.get("loader") is not None:
            batches.load_state_dict(state["loader"])
    if env.is_main:
        truncate_metrics(output / "metrics.jsonl", start_step)
    metrics = MetricsLogger(output, env.is_main, cfg.logging.tensorboard, cfg.logging.wandb_project,
                            cfg.model_dump())
    autocast = (torch.autocast(env.device.type, dtype=torch.bfloat16) if bf16 and not env.distributed
                else contextlib.nullcontext())
    step_sleep = float(os.environ.get("INFIR_TRAIN_STEP_SLEEP", "0"))  # slows demos and kill/resume tests
    if env.is_main:
        log.info("training %d steps from step %d: %d x %d micro-batches x %d ranks (accum %d), device %s%s",
                 total_steps, start_step, cfg.micro_batch_size, cfg.seq_len, env.world_size, accum, env.device,
                 ", bf16" if bf16 else "")
    iterator = iter(batches)
    console_every = max(cfg.logging.interval, total_steps // 20, 1)  # ~20 console lines per run
    last_loss = float("nan")
    step = start_step
    with progress() as bar:
        task = bar.add_task("train", total=total_steps, completed=start_step)
        for step in range(start_step, total_steps):
            t0 = time.perf_counter()
            lr = cfg.schedule.lr_at(step, cfg.optimizer.lr, total_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            try:
                micro = [next(iterator) for _ in range(accum)]
            except StopIteration:
                log.warning("data ran out at step %d", step)
                break
            counts = torch.tensor([sum(int((b["labels"] != IGNORE_INDEX).sum()) for b in micro),
                                   sum(b["input_ids"].numel() for b in micro)], dtype=torch.float64)
            label_tokens, input_tokens = all_reduce_sum(counts.to(env.device), env).tolist()
            scale = env.world_size / max(label_tokens, 1.0)  # FSDP averages grads over ranks
            ce_sum = torch.zeros((), device=env.device, dtype=torch.float64)
            for i, batch in enumerate(micro):
                if env.distributed:
                    module.set_requires_gradient_sync(i == accum - 1)
                with autocast:
                    loss_sum, ce = module(**_to_device(batch, env.device))
                (loss_sum * scale).backward()
                ce_sum += ce.detach().double()
            grad_norm = torch.nn.utils.clip_grad_norm_(module.parameters(), cfg.optimizer.grad_clip or float("inf"))
            if hasattr(grad_norm, "full_tensor"):
                grad_norm = grad_norm.full_tensor()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            last_loss = float(all_reduce_sum(ce_sum, env)) / max(label_tokens, 1.0)
            tokens_seen += int(input_tokens)
            done = step + 1
            if step_sleep:
                time.sleep(step_sleep)
            elapsed = time.perf_counter() - t0
            if done % cfg.logging.interval == 0 or done == total_steps:
                metrics.log(done, {"loss": last_loss, "lr": lr, "tokens": tokens_seen,
                                   "tokens_per_s": input_tokens / elapsed, "grad_norm": float(grad_norm),
                                   "step_time_s": elapsed})
            if env.is_main and (done % console_every == 0 or done == total_steps):
                log.info("step %d/%d  loss %.4f  lr %.3g  grad norm %.3f  %.0f tokens/s", done, total_steps,
                         last_loss, lr, float(grad_norm), input_tokens / elapsed)
            if evaluate is not None and cfg.eval_interval > 0 and (done % cfg.eval_interval == 0
                                                                  or done == total_steps):
                module.eval()
                with torch.no_grad(), autocast:
                    results = evaluate(module, done)
                module.train()
                if results:
                    metrics.log(done, {f"eval/{k}": v for k, v in results.items()})
            if cfg.checkpoint.interval > 0 and (done % cfg.checkpoint.interval == 0 or done == total_steps):
                loader_state = batches.state_dict() if hasattr(batches, "state_dict") else None
                save_checkpoint(ckpt_root, done, module, optimizer,
                                {"tokens": tokens_seen, "loader": loader_state, "lr": lr}, env,
                                cfg.checkpoint.keep)
            bar.update(task, completed=done, description=f"train loss {last_loss:.4f}")
    metrics.close()
    summary = {"steps": step + 1 if total_steps > start_step else start_step, "total_steps": total_steps,
               "final_loss": last_loss, "tokens": tokens_seen, "world_size": env.world_size,
               "resumed_from": start_step or None}
    return module, summary
