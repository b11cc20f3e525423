"""Training throughput of infir's trainer vs HF transformers' LlamaForCausalLM (eager and compiled).

Measures tokens/s and MFU (FLOPs/token = 6N + 12·L·d·T, H100 bf16 peak 989 TFLOP/s) for the
llama3.2-1b preset at sequence length 4096 with document masking on (packed documents), then HF's
LlamaForCausalLM on the same data with and without torch.compile (HF sees plain causal batches: its
SDPA path has no document masking), and checks that the first steps' losses of both match at the
same seed and data (plain causal batches, so both compute the same function).

    python bench/train_throughput.py                 # H100: the real measurement
    python bench/train_throughput.py --quick         # CPU: tiny preset, a few steps (tested)

Last line: `result: tokens_per_s=X mfu=Y speedup_vs_hf_compile=Z`.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from infir.model import registry
from infir.train.config import TrainConfig
from infir.train.distributed import DistEnv
from infir.train.loop import build_optimizer, train
from infir.train.tokenized import pack_row

H100_PEAK_FLOPS = 989e12


def flops_per_token(model: nn.Module, seq_len: int) -> float:
    c = model.config
    return 6 * c.num_parameters() + 12 * c.num_hidden_layers * c.hidden_size * seq_len


def synthetic_batches(vocab: int, eos: int, seq_len: int, micro: int, n: int, seed: int, packed: bool):
    """Deterministic batches of the contract; documents of 64..2*seq_len tokens when packed."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        rows = []
        for _ in range(micro):
            tokens = rng.integers(0, vocab - 1, seq_len + 1)
            tokens[tokens == eos] = 0
            if packed:
                pos = 0
                while True:
                    pos += int(rng.integers(64, max(65, 2 * seq_len // 3)))
                    if pos >= seq_len:
                        break
                    tokens[pos] = eos
            row = pack_row(tokens, eos)
            if not packed:
                row = {"input_ids": tokens[:-1], "labels": tokens[1:]}
            rows.append(row)
        out.append({k: torch.from_numpy(np.stack([r[k] for r in rows])).long() for k in rows[0]})
    return out


def run_infir(model: nn.Module, batches: list, cfg: TrainConfig, env: DistEnv, warmup: int) -> tuple[float, list[float]]:
    """(tokens/s after warmup steps, per-step losses) through the real training loop."""
    with tempfile.TemporaryDirectory() as tmp:
        train(model, batches, cfg, Path(tmp), env=env, total_steps=len(batches))
        rows = [json.loads(x) for x in (Path(tmp) / "metrics.jsonl").read_text().splitlines()]
    timed = rows[warmup:]
    tokens_per_s = sum(r["tokens_per_s"] * r["step_time_s"] for r in timed) / sum(r["step_time_s"] for r in timed)
    return tokens_per_s, [r["loss"] for r in rows]


def run_hf(hf, batches: list, cfg: TrainConfig, env: DistEnv, warmup: int, bf16: bool) -> tuple[float, list[float]]:
    """The same optimizer and schedule around LlamaForCausalLM with full logits (what users run)."""
    hf.to(env.device).train()
    opt = build_optimizer(hf.parameters(), cfg.optimizer, env.device, env.distributed)
    losses, times, tokens = [], [], 0
    autocast = torch.autocast(env.device.type, dtype=torch.bfloat16, enabled=bf16)
    for step, batch in enumerate(batches):
        if env.device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for g in opt.param_groups:
            g["lr"] = cfg.schedule.lr_at(step, cfg.optimizer.lr, len(batches))
        ids, labels = batch["input_ids"].to(env.device), batch["labels"].to(env.device)
        with autocast:
            logits = hf(input_ids=ids).logits
        loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), labels.flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(hf.parameters(), cfg.optimizer.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        if step >= warmup:
            times.append(time.perf_counter() - t0)
            tokens += ids.numel()
    return tokens / sum(times), losses


def hf_twin(model: nn.Module):
    """transformers' LlamaForCausalLM with the same weights (via an HF folder written by infir)."""
    from transformers import LlamaForCausalLM

    from infir.model.hf_io import save_model

    with tempfile.TemporaryDirectory() as tmp:
        save_model(model, Path(tmp) / "m")
        return LlamaForCausalLM.from_pretrained(Path(tmp) / "m", attn_implementation="sdpa",
                                                torch_dtype=torch.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="CPU smoke mode: micro preset, short sequences.")
    ap.add_argument("--preset", default=None)
    ap.add_argument("--seq-len", type=int, default=None)
    ap.add_argument("--micro-batch", default=None,
                    help="infir micro-batch, or a comma list to try (the fastest that fits is reported).")
    ap.add_argument("--hf-micro-batch", type=int, default=None, help="HF eager runs out of memory at 4 (1B).")
    ap.add_argument("--hf-compile-micro-batch", type=int, default=None, help="HF compiled fits 4 (1B).")
    ap.add_argument("--steps", type=int, default=None, help="Timed steps (after warmup).")
    ap.add_argument("--warmup", type=int, default=None)
    ap.add_argument("--match-steps", type=int, default=None, help="Steps of the loss comparison with HF.")
    ap.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None)
    ap.add_argument("--activation-checkpointing", action="store_true")
    ap.add_argument("--skip-hf", action="store_true", help="Only infir's throughput (tuning runs).")
    args = ap.parse_args()

    quick = args.quick
    preset = args.preset or ("micro" if quick else "llama3.2-1b")
    seq = args.seq_len or (128 if quick else 4096)
    micros = [int(m) for m in (args.micro_batch or ("2" if quick else "4,6,8")).split(",")]
    hf_micro = args.hf_micro_batch or (micros[0] if quick else 2)
    hf_compile_micro = args.hf_compile_micro_batch or (micros[0] if quick else 4)
    steps, warmup = args.steps or (4 if quick else 20), args.warmup if args.warmup is not None else (1 if quick else 5)
    match_steps = args.match_steps or (6 if quick else 50)
    use_compile = args.compile if args.compile is not None else not quick
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    env = DistEnv(rank=0, world_size=1, local_rank=0, device=device)
    bf16 = device.type == "cuda"
    torch.manual_seed(0)
    base = registry.build_model(registry.preset(preset))
    vocab = base.config.vocab_size
    eos = vocab - 1  # synthetic data: any id works as the document separator
    fpt = flops_per_token(base, seq)
    print(f"device {device}, preset {preset} ({base.config.num_parameters():,} params), seq {seq}, "
          f"micro-batch {micros} (HF eager {hf_micro}, compiled {hf_compile_micro}), {steps} timed steps after {warmup}, bf16={bf16}, "
          f"compile={use_compile}, FLOPs/token {fpt:.3e}")

    def cfg_for(mb: int, compile_: bool, constant: bool = False) -> TrainConfig:
        return TrainConfig(model=preset, seq_len=seq, micro_batch_size=mb, global_batch_size=mb, max_steps=1,
                           optimizer={"lr": 1e-4 if constant else 1.4e-3},
                           schedule={"kind": "constant" if constant else "wsd", "warmup_steps": 0 if constant else 10},
                           runtime={"compile": compile_, "activation_checkpointing": args.activation_checkpointing},
                           checkpoint={"interval": 0}, logging={"tensorboard": False})

    results: dict[str, float] = {}
    # 1) infir, packed documents with document masking (flex attention on GPU), at each micro-batch
    for micro in micros:
        packed = synthetic_batches(vocab, eos, seq, micro, warmup + steps, seed=1, packed=True)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        try:
            tps, _ = run_infir(copy.deepcopy(base), packed, cfg_for(micro, use_compile), env, warmup)
        except torch.OutOfMemoryError:
            print(f"infir: out of memory at micro-batch {micro}")
            break
        finally:
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
        peak = f", peak memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if device.type == "cuda" else ""
        print(f"infir (document masking{', compiled' if use_compile else ''}, micro-batch {micro}): {tps:,.0f} "
              f"tokens/s, MFU {tps * fpt / H100_PEAK_FLOPS:.1%} of H100 peak{peak}")
        if tps > results.get("infir", 0.0):
            results["infir"], results["infir_micro_batch"] = tps, micro
    tps = results["infir"]
    # 2) HF eager and compiled, plain causal batches; each at its own largest micro-batch that fits
    #    (eager runs out of memory at 4 with the 1B preset; compiled fits 4, as infir does)
    hf_variants = [("hf_eager", False, hf_micro)] + ([("hf_compile", True, hf_compile_micro)] if use_compile else [])
    if args.skip_hf:
        print(f"result: tokens_per_s={tps:.0f} mfu={tps * fpt / H100_PEAK_FLOPS:.4f} speedup_vs_hf_compile=nan")
        return
    for name, compiled, mb in hf_variants:
        plain = synthetic_batches(vocab, eos, seq, mb, warmup + steps, seed=2, packed=False)
        hf = hf_twin(base)
        if compiled:
            hf = torch.compile(hf)
        try:
            tps_hf, _ = run_hf(hf, plain, cfg_for(mb, False), env, warmup, bf16)
            results[name] = tps_hf
            print(f"{name} (micro-batch {mb}): {tps_hf:,.0f} tokens/s, MFU {tps_hf * fpt / H100_PEAK_FLOPS:.1%}")
        except torch.OutOfMemoryError:
            print(f"{name}: out of memory at micro-batch {mb}")
        del hf
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    # 3) loss match: same weights, same plain causal data, same optimizer settings
    match = synthetic_batches(vocab, eos, seq, hf_micro, match_steps, seed=3, packed=False)
    _, ours = run_infir(copy.deepcopy(base), match, cfg_for(hf_micro, False, constant=True), env, 0)
    _, theirs = run_hf(hf_twin(base), match, cfg_for(hf_micro, False, constant=True), env, 0, bf16)
    diffs = [abs(a - b) for a, b in zip(ours, theirs, strict=True)]
    print(f"loss match over {match_steps} steps: first {ours[0]:.4f} vs {theirs[0]:.4f}, last {ours[-1]:.4f} vs "
          f"{theirs[-1]:.4f}, max |diff| {max(diffs):.2e}, mean |diff| {sum(diffs) / len(diffs):.2e}")
    mfu = results["infir"] * fpt / H100_PEAK_FLOPS
    ref = results.get("hf_compile")
    speedup = results["infir"] / ref if ref else math.nan
    if ref is None and "hf_eager" in results:
        print(f"speedup vs HF eager: {results['infir'] / results['hf_eager']:.2f}x (HF compile not run)")
    print(f"best infir micro-batch: {results['infir_micro_batch']}")
    print(f"result: tokens_per_s={results['infir']:.0f} mfu={mfu:.4f} speedup_vs_hf_compile={speedup:.2f}")


if __name__ == "__main__":
    main()
