"""The pretrain and anneal stages: tokenized shards in, an HF model folder out.

Anneal is the same function with an anneal config: `init_from` the pretrained model and a
decaying schedule (`schedule: decay`), usually with an annealing data mixture.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import torch

from infir.data.tokens import find_sources
from infir.model import registry
from infir.model.hf_io import load_model
from infir.train.config import TrainConfig
from infir.train.distributed import init_distributed
from infir.train.export import export_model
from infir.train.tokenized import PackedLoader
from infir.utils.io import atomic_write_json
from infir.utils.log import get_logger

log = get_logger(__name__)


def build_model(cfg: TrainConfig, init_from: Path | None, tokenizer: Any) -> Any:
    """The starting model: a folder to continue from (any registered architecture), or a freshly initialised
    preset of any architecture (`infir.model.registry.presets()`)."""
    source = init_from or (Path(cfg.init_from) if cfg.init_from else None)
    if source is not None:
        model = load_model(source, device="cpu", dtype=torch.float32)
        log.info("initialised from %s (%s)", source, model.config.model_type)
        return model
    config = registry.preset(cfg.model)
    vocab = cfg.vocab_size or config.vocab_size
    if tokenizer is not None and cfg.vocab_size is None and len(tokenizer) > vocab:
        vocab = len(tokenizer)
    if tokenizer is not None and len(tokenizer) > vocab:
        raise ValueError(f"tokenizer has {len(tokenizer)} tokens but the model vocab is {vocab}")
    overrides: dict[str, Any] = {"vocab_size": vocab}
    if tokenizer is not None:
        ids = registry.special_ids(tokenizer, registry.architecture_of(config))
        if ids["family"] is not None:  # the tokenizer's own begin/end-of-text tokens (Llama 3's or Qwen2's)
            overrides["bos_token_id"] = ids["bos"]  # None for Qwen2's family: no BOS
            if ids["end_of_text"] is not None:
                overrides["eos_token_id"] = ids["end_of_text"]
    torch.manual_seed(cfg.runtime.seed)
    return registry.build_model(dataclasses.replace(config, **overrides))


def resolve_sources(cfg: TrainConfig, data_dir: Path) -> tuple[list[Path], list[float] | None]:
    if not cfg.sources:
        return find_sources(data_dir), None  # weighted by size
    paths = [Path(s.path) if Path(s.path).is_absolute() else data_dir / s.path for s in cfg.sources]
    return paths, [s.weight for s in cfg.sources]


def _last_logged_loss(metrics_file: Path) -> float:
    loss = float("nan")
    if metrics_file.exists():
        for line in metrics_file.read_text().splitlines():
            row = json.loads(line)
            if "loss" in row:
                loss = row["loss"]
    return loss


def run_pretrain(cfg: TrainConfig, data_dir: Path, output: Path, tokenizer_dir: Path | None,
                 init_from: Path | None = None) -> dict:
    """Pretrain (or anneal) on the tokenized sources in `data_dir`; resumable.

    Writes output/model/ (HF folder + tokenizer), output/metrics.jsonl, output/checkpoints/,
    output/tensorboard/ and output/summary.json; returns the summary (incl. final_loss).
    Works in one process or under torchrun (FSDP2).
    """
    from infir.train.loop import train
    from infir.train.offline_eval import OfflineEvaluator

    data_dir, output = Path(data_dir), Path(output)
    env = init_distributed()
    tokenizer = None
    if tokenizer_dir is not None:
        from infir.model.tokenizer import load_tokenizer

        tokenizer = load_tokenizer(tokenizer_dir)
    model = build_model(cfg, init_from, tokenizer)
    config = model.config
    sources, weights = resolve_sources(cfg, data_dir)
    loader = PackedLoader(sources, weights, cfg.seq_len, cfg.micro_batch_size, env.rank, env.world_size,
                          shuffle=cfg.shuffle, seed=cfg.runtime.seed)
    evaluator = OfflineEvaluator.build(cfg.eval, tokenizer, output / "eval", env) if tokenizer is not None else None
    module, summary = train(model, loader, cfg, output, evaluate=evaluator, env=env)
    export_model(module, config, output / "model", tokenizer, env)
    if math.isnan(summary["final_loss"]):
        summary["final_loss"] = _last_logged_loss(output / "metrics.jsonl")
    summary.update(model_dir=str(output / "model"), metrics=str(output / "metrics.jsonl"),
                   parameters=config.num_parameters(), sources={str(p): w for p, w in
                                                                 zip(sources, weights or [None] * len(sources),
                                                                     strict=True)},
                   data_epochs=loader.epochs())
    if env.is_main:
        atomic_write_json(output / "summary.json", summary)
        log.info("done: final loss %.4f after %d steps; model in %s", summary["final_loss"],
                 summary["steps"], output / "model")
    return summary
