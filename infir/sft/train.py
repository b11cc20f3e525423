"""The SFT stage: read → select → tokenize (assistant-only labels) → pack → train → HF model folder.

`run_sft(cfg, base_model, data, output)` is what `infir train sft` and `infir run` call. Long-CoT SFT
is the same function with `SFTConfig.long_cot()` and the instruct model as `base_model`.

output/
  data/quarantine.jsonl   records that could not be used, with the reason
  data/samples.npz        tokenized training samples (reused on resume when the inputs match)
  data/heldout.npz        held-out samples for the assistant-token loss
  data/stats.json         read / selection / tokenization counts (truncations included)
  checkpoints/ metrics.jsonl   written by the training loop (resumable)
  model/                  the fine-tuned model, HF layout, tokenizer with chat template
  summary.json            what happened
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import random
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from infir.data.chats import Conversation, ReadResult, read_conversations
from infir.sft.config import SFTConfig
from infir.sft.data import IGNORE_INDEX, EncodedSample, encode_conversations, load_samples, save_samples
from infir.sft.selection import compress_by_difficulty, dedup_instructions, mix_by_domain, s1_select
from infir.utils.io import atomic_write_json
from infir.utils.log import get_logger

log = get_logger(__name__)


def read_sources(cfg: SFTConfig, data: list[Path]) -> ReadResult:
    result = ReadResult()
    for path in data:
        result.extend(read_conversations(path))
    for src in cfg.sources:
        for path in src.files():
            result.extend(read_conversations(path, src.format, src.domain))
    return result


def select_conversations(conversations: list[Conversation], cfg: SFTConfig,
                         ) -> tuple[list[Conversation], list[Conversation], dict[str, Any]]:
    """Apply the selection steps, then hold out a share for evaluation; returns (train, heldout, counts)."""
    sel, counts = cfg.selection, {}
    if sel.dedup:
        conversations, counts["duplicates_dropped"] = dedup_instructions(conversations)
    if sel.difficulty_keep:
        conversations, counts["difficulty"] = compress_by_difficulty(
            conversations, sel.difficulty_keep, sel.difficulty_domains, sel.keep_unlabeled)
    if sel.s1_subset:
        conversations, counts["s1"] = s1_select(conversations, sel.s1_subset, seed=cfg.runtime.seed)
    rng = random.Random(cfg.runtime.seed)
    order = list(range(len(conversations)))
    rng.shuffle(order)
    n_held = min(cfg.heldout_max, int(len(conversations) * cfg.heldout_fraction))
    held_ids = set(order[:n_held])
    heldout = [c for i, c in enumerate(conversations) if i in held_ids]
    train = [c for i, c in enumerate(conversations) if i not in held_ids]
    if sel.domain_weights:
        train, counts["mixture"] = mix_by_domain(train, sel.domain_weights, sel.mixture_size, seed=cfg.runtime.seed)
    counts["train"], counts["heldout"] = len(train), len(heldout)
    counts["train_domains"] = dict(Counter(c.domain for c in train))
    return train, heldout, counts


def _fingerprint(cfg: SFTConfig, data: list[Path], tokenizer: Any) -> str:
    files = []
    for p in [*data, *(f for s in cfg.sources for f in s.files())]:
        st = Path(p).stat()
        files.append([str(Path(p).resolve()), st.st_size, st.st_mtime_ns])
    keys = cfg.model_dump(mode="json", include={"sources", "selection", "max_length", "heldout_fraction",
                                                 "heldout_max", "seed"})
    blob = json.dumps([keys, files, len(tokenizer), getattr(tokenizer, "chat_template", None)], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def prepare_sft_data(cfg: SFTConfig, data: list[Path], tokenizer: Any, out_dir: Path,
                     ) -> tuple[list[EncodedSample], list[EncodedSample], dict[str, Any]]:
    """Read, select and tokenize; reuses out_dir's samples when inputs and settings are unchanged."""
    out_dir.mkdir(parents=True, exist_ok=True)
    fingerprint = _fingerprint(cfg, data, tokenizer)
    stats_path = out_dir / "stats.json"
    if stats_path.exists() and (out_dir / "samples.npz").exists():
        stats = json.loads(stats_path.read_text())
        if stats.get("fingerprint") == fingerprint:
            log.info("reusing tokenized SFT data in %s", out_dir)
            heldout = load_samples(out_dir / "heldout.npz") if (out_dir / "heldout.npz").exists() else []
            return load_samples(out_dir / "samples.npz"), heldout, stats
    read = read_sources(cfg, data)
    read_counts = read.counts
    train_convs, held_convs, selection = select_conversations(read.conversations, cfg)
    samples, enc_stats, quarantined = encode_conversations(train_convs, tokenizer, cfg.max_length)
    heldout, held_stats, held_quarantined = encode_conversations(held_convs, tokenizer, cfg.max_length)
    read.quarantined.extend(quarantined + held_quarantined)
    read.write_quarantine(out_dir / "quarantine.jsonl")
    save_samples(samples, out_dir / "samples.npz")
    save_samples(heldout, out_dir / "heldout.npz")
    stats = {"fingerprint": fingerprint, "read": read_counts, "selection": selection,
             "tokenize": enc_stats.as_dict(), "tokenize_heldout": held_stats.as_dict(),
             "quarantine_file": str(out_dir / "quarantine.jsonl")}
    atomic_write_json(stats_path, stats)
    log.info("SFT data: %d train samples (%d truncated at %d), %d held out, %d quarantined -> %s",
             len(samples), enc_stats.truncated, cfg.max_length, len(heldout), len(read.quarantined), out_dir)
    return samples, heldout, stats


@torch.no_grad()
def heldout_loss(module: torch.nn.Module, batches: list[dict[str, torch.Tensor]], device: torch.device) -> float:
    """Mean cross-entropy per assistant token over `batches` (module: CausalLMLoss-like or a bare causal LM)."""
    total, count = 0.0, 0
    for batch in batches:
        batch = {k: v.to(device) for k, v in batch.items()}
        n = int((batch["labels"] != IGNORE_INDEX).sum())
        if n == 0:
            continue
        if hasattr(module, "blocks"):  # CausalLMLoss: forward(**batch) -> (loss_sum, ce_sum)
            _, ce = module(**batch)
        else:  # a bare causal LM: the same chunked loss, never the full [T, vocab] logits at once
            from infir.train.loss import linear_cross_entropy

            hidden = module(batch["input_ids"], position_ids=batch["position_ids"],
                            document_ids=batch["document_ids"], return_hidden=True)
            _, ce = linear_cross_entropy(hidden, module.lm_head.weight, batch["labels"])
        total += float(ce)
        count += n
    return total / max(count, 1)


def _heldout_batches(samples: list[EncodedSample], cfg: SFTConfig, pad_id: int) -> list[dict[str, torch.Tensor]]:
    from infir.sft.batching import SFTBatches

    if not samples:
        return []
    loader = SFTBatches(samples, global_batch_size=len(samples), micro_batch_size=1, max_length=cfg.max_length,
                        packing=cfg.packing, pad_id=pad_id, seed=cfg.runtime.seed, total_steps=1)
    return [b for b in loader.micro_batches(0) if (b["labels"] != IGNORE_INDEX).any()]


def train_config(cfg: SFTConfig, total_steps: int, accum_steps: int, world_size: int):
    """The trainer's config for this SFT run: the same shared parts, SFT's batch geometry.

    The trainer takes global_batch_size / (micro_batch_size x world) micro-batches per step; SFT steps are
    `accum_steps` packed micro-batches per rank, so it is told micro_batch_size=1 and
    global_batch_size=accum_steps x world (each micro-batch holds up to cfg.micro_batch_size rows).
    """
    from infir.train.config import TrainConfig

    return TrainConfig(
        model="llama3.2-1b", seq_len=cfg.max_length, micro_batch_size=1,
        global_batch_size=accum_steps * world_size, max_steps=total_steps, max_tokens=None,
        optimizer=cfg.optimizer, schedule=cfg.schedule, runtime=cfg.runtime, logging=cfg.logging,
        checkpoint=cfg.checkpoint, eval_interval=cfg.eval_interval or total_steps,
    )


def _set_special_ids(config: Any, tok: Any) -> None:
    """bos = the tokenizer's; eos = end-of-text and end-of-turn (generation stops at either), by the
    end-of-sequence rule of the tokenizer's family (infir.model.registry: Llama 3's or Qwen2's tokens)."""
    from infir.model.registry import architecture_of, special_ids

    vocab = config.vocab_size

    def valid(i: Any) -> bool:
        return isinstance(i, int) and 0 <= i < vocab and i != tok.unk_token_id

    old = config.eos_token_id if isinstance(config.eos_token_id, list) else [config.eos_token_id]
    eos = {i for i in old if valid(i)}
    ends = special_ids(tok, architecture_of(config))
    eos |= {i for i in (ends["end_of_text"], ends["end_of_turn"], tok.eos_token_id) if valid(i)}
    if valid(tok.bos_token_id):
        config.bos_token_id = tok.bos_token_id
    if eos:
        config.eos_token_id = sorted(eos) if len(eos) > 1 else eos.pop()


def run_sft(cfg: SFTConfig, base_model: Path, data: list[Path], output: Path,
            tokenizer: str | Path | None = None) -> dict[str, Any]:
    """Fine-tune the model in `base_model` on `data` (+ cfg.sources); the result goes to output/model.

    tokenizer: a tokenizer folder/file when `base_model` holds none. Resumes from output/checkpoints.
    """
    from infir.model.hf_io import load_model, save_model
    from infir.model.registry import model_from_state
    from infir.model.tokenizer import load_tokenizer
    from infir.sft.batching import SFTBatches
    from infir.train.checkpoint import full_model_state
    from infir.train.distributed import barrier, init_distributed
    from infir.train.loop import train

    base_model, output = Path(base_model), Path(output)
    data = [Path(p) for p in data]
    tok_path = Path(tokenizer) if tokenizer else base_model
    if tokenizer is None and not any((base_model / f).exists() for f in ("tokenizer.json", "tokenizer.model",
                                                                           "tokenizer_config.json")):
        raise FileNotFoundError(f"{base_model} holds no tokenizer; pass tokenizer=")
    tok = load_tokenizer(tok_path)
    env = init_distributed()
    if env.distributed and not env.is_main:
        barrier(env)  # rank 0 reads and tokenizes first; the others then reuse its files
    samples, heldout, data_stats = prepare_sft_data(cfg, data, tok, output / "data")
    if env.distributed and env.is_main:
        barrier(env)
    if not samples:  # never train on nothing: say what became of the data instead
        raise ValueError(f"SFT: no usable training sample in {[str(p) for p in data] + [s.path for s in cfg.sources]} "
                         f"(read: {data_stats['read']}, selection: {data_stats['selection']}, tokenize: "
                         f"{data_stats['tokenize']}); see {output / 'data' / 'quarantine.jsonl'}")
    model = load_model(base_model)
    if len(tok) > model.config.vocab_size:
        raise ValueError(f"tokenizer has {len(tok)} tokens but the model only {model.config.vocab_size} embeddings")
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    steps_per_epoch = math.ceil(len(samples) / cfg.global_batch_size)
    total_steps = max(1, math.ceil(cfg.epochs * steps_per_epoch))
    if cfg.max_steps:
        total_steps = min(total_steps, cfg.max_steps)
    loader = SFTBatches(samples, global_batch_size=cfg.global_batch_size, micro_batch_size=cfg.micro_batch_size,
                        max_length=cfg.max_length, packing=cfg.packing, pad_id=pad_id, seed=cfg.runtime.seed,
                        total_steps=total_steps, rank=env.rank, world_size=env.world_size)
    # Every rank evaluates every held-out batch: under FSDP a forward pass is collective.
    held_batches = _heldout_batches(heldout, cfg, pad_id)
    model.to(env.device)
    before = heldout_loss(model, held_batches, env.device) if held_batches else None
    log.info("SFT: %d samples, %d steps (%d per epoch), batch %d conversations, max length %d, "
             "%d micro-batches of <= %d rows per step and rank; held-out assistant loss before: %s",
             len(samples), total_steps, steps_per_epoch, cfg.global_batch_size, cfg.max_length,
             loader.accum_steps, cfg.micro_batch_size, f"{before:.4f}" if before is not None else "n/a")
    last_eval: dict[str, float] = {}

    def evaluate(module: torch.nn.Module, step: int) -> dict[str, float]:
        if held_batches:
            last_eval["heldout_assistant_loss"] = heldout_loss(module, held_batches, env.device)
        return dict(last_eval)

    tcfg = train_config(cfg, total_steps, loader.accum_steps, env.world_size)
    module, summary = train(model, loader, tcfg, output, total_steps=total_steps, evaluate=evaluate, env=env)
    after = last_eval.get("heldout_assistant_loss")
    if after is None and held_batches:  # resumed after the last step: nothing was evaluated this time
        module.eval()
        after = heldout_loss(module, held_batches, env.device)
    state = full_model_state(module)  # collective under FSDP
    if env.is_main:
        config = dataclasses.replace(model.config)
        _set_special_ids(config, tok)
        final = model_from_state(config, {k.removeprefix("model."): v for k, v in state.items()},
                                 where="SFT weights", device="cpu")
        save_model(final, output / "model", tokenizer=tok)
    barrier(env)
    result = {**summary, "samples": len(samples), "heldout": len(heldout), "steps_per_epoch": steps_per_epoch,
              "heldout_assistant_loss_before": before, "heldout_assistant_loss_after": after,
              "truncated": data_stats["tokenize"]["truncated"], "quarantined": data_stats["read"]["quarantined"]
              + data_stats["tokenize"]["quarantined"] + data_stats["tokenize_heldout"]["quarantined"],
              "model": str(output / "model"), "data_stats": str(output / "data" / "stats.json")}
    previous = output / "summary.json"
    if not summary.get("final_loss") == summary.get("final_loss") and previous.exists():  # NaN: no step ran now
        result["final_loss"] = json.loads(previous.read_text()).get("final_loss")
    if env.is_main:
        atomic_write_json(output / "summary.json", result)
        log.info("SFT done: held-out assistant loss %s -> %s; model in %s", before, after, output / "model")
    return result
