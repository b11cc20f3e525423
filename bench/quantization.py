"""Weight-only int8 / int4 quantization on CPU: size, decode tokens/s and perplexity vs fp32 and bf16.

Quality: a Llama of `--hidden` width (default 1024, 2 layers), briefly trained here on WikiText-2
*test* text so perplexity means something; perplexity is measured on held-out WikiText-2 *valid*
text. The trained model is cached in --work-dir, so reruns only measure.
Speed: batch-1 greedy decode through infir's generation engine, on that model and on a model with
Llama-3.2-1B layer shapes (hidden 2048, FFN 8192, 32/8 heads; `--speed-layers` of its 16 layers,
random weights: speed does not depend on the values), where decode is clearly weight-bandwidth bound.
`int8` and `int4` are weight-only; `int8-dynamic` also quantizes activations (fbgemm, for comparison).

    .venv/bin/python bench/quantization.py              # last line: result: int8_ppl_increase=X int8_speedup=Y
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import time
from pathlib import Path

import torch

from infir.generation import SamplingParams
from infir.generation.engine import InfirGenerator
from infir.model import registry
from infir.model.hf_io import load_model, save_model
from infir.model.tokenizer import load_tokenizer, train_bpe_tokenizer
from infir.serve.quantize import model_bytes, quantize_model

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("INFIR_SHARED_DATA", REPO.parent / "shared" / "data")) / "corpus" / "wikitext-2"


def build_model(work: Path, args: argparse.Namespace) -> Path:
    """Train a tokenizer and briefly train the model on WikiText-2 test text; cached in `work`."""
    out = work / f"model-h{args.hidden}-l{args.layers}-s{args.train_steps}"
    if (out / "config.json").exists():
        return out
    text = (DATA / "test.txt").read_text(encoding="utf-8")
    lines = [t for t in text.split("\n") if t.strip()]
    tokenizer = train_bpe_tokenizer(lines, vocab_size=args.vocab)
    cfg = registry.preset("llama3.2-1b", vocab_size=args.vocab, hidden_size=args.hidden,
                          intermediate_size=int(args.hidden * 2.75), num_hidden_layers=args.layers,
                          num_attention_heads=args.hidden // 64, num_key_value_heads=max(1, args.hidden // 256),
                          head_dim=64, max_position_embeddings=2048, rope_scaling=None,
                          bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.convert_tokens_to_ids("<|eot_id|>"))
    torch.manual_seed(0)
    model = registry.build_model(cfg)
    ids = torch.tensor(tokenizer.encode(text, add_special_tokens=False))
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    seq, batch = args.seq_len, args.batch_size
    g = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    for step in range(args.train_steps):
        starts = torch.randint(0, len(ids) - seq - 1, (batch,), generator=g)
        x = torch.stack([ids[s : s + seq + 1] for s in starts.tolist()])
        lr = args.lr * min(1.0, (step + 1) / 10)
        for group in opt.param_groups:
            group["lr"] = lr
        loss = torch.nn.functional.cross_entropy(model(x[:, :-1]).flatten(0, 1), x[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 10 == 0 or step == args.train_steps - 1:
            print(f"  train step {step + 1}/{args.train_steps} loss {loss.item():.3f} ({time.perf_counter() - t0:.0f}s)",
                  flush=True)
    return save_model(model, out, tokenizer=tokenizer)


@torch.inference_mode()
def perplexity(model: torch.nn.Module, ids: torch.Tensor, seq_len: int) -> float:
    """exp(mean next-token NLL) over non-overlapping windows of held-out text."""
    total, count = 0.0, 0
    for start in range(0, len(ids) - 1, seq_len):
        window = ids[start : start + seq_len + 1][None]
        if window.shape[1] < 2:
            break
        logits = model(window[:, :-1]).float()
        total += torch.nn.functional.cross_entropy(logits[0], window[0, 1:], reduction="sum").item()
        count += window.shape[1] - 1
    return math.exp(total / count)


def decode_tokens_per_s(model: torch.nn.Module, tokenizer, new_tokens: int, repeats: int) -> float:
    """Batch-1 greedy decode through infir's generation engine (EOS ignored); best of `repeats`."""
    gen = InfirGenerator(model, tokenizer, eos_ids=set(), batch_size=1)
    params = SamplingParams(max_new_tokens=new_tokens, temperature=0.0)
    prompt = "The European lobster is a species of"
    gen.generate([prompt], SamplingParams(max_new_tokens=4))  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        out = gen.generate([prompt], params)[0]
        best = min(best, time.perf_counter() - t)
        assert len(out.token_ids) == new_tokens
    return new_tokens / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, help="Use this model folder instead of building one.")
    ap.add_argument("--work-dir", type=Path, default=REPO / "runs" / "bench" / "quantization")
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--train-steps", type=int, default=60)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--eval-tokens", type=int, default=8192)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--speed-layers", type=int, default=4, help="Layers of the 1B-shaped speed model (0: skip).")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    model_dir = args.model or build_model(args.work_dir, args)
    tokenizer = load_tokenizer(model_dir)
    base = load_model(model_dir).eval()
    text = (DATA / "valid.txt").read_text(encoding="utf-8")
    ids = torch.tensor(tokenizer.encode(text, add_special_tokens=False)[: args.eval_tokens])
    cfg = base.config
    print(f"model {model_dir} (hidden {cfg.hidden_size}, {cfg.num_hidden_layers} layers, vocab {cfg.vocab_size}, "
          f"{sum(p.numel() for p in base.parameters()) / 1e6:.1f}M params); {len(ids)} held-out tokens; "
          f"{args.threads} thread(s)")

    rows = {}
    print(f"{'variant':12} {'MB':>8} {'decode tok/s':>13} {'ppl':>10}")
    for name in VARIANTS:
        model = variant(base, name)
        ppl = perplexity(model, ids, args.seq_len)
        tps = decode_tokens_per_s(model, tokenizer, args.new_tokens, args.repeats)
        rows[name] = (model_bytes(model) / 1e6, tps, ppl)
        print(f"{name:12} {rows[name][0]:8.1f} {tps:13.1f} {ppl:10.3f}", flush=True)
        del model
    fp_mb, fp_tps, fp_ppl = rows["fp32"]
    for name in VARIANTS[1:]:
        mb, tps, ppl = rows[name]
        print(f"{name:12}: size x{mb / fp_mb:.2f}, decode x{tps / fp_tps:.2f} vs fp32 (x{tps / rows['bf16'][1]:.2f} vs bf16), "
              f"ppl {100 * (ppl / fp_ppl - 1):+.2f}% vs fp32")
    int8_increase = 100 * (rows["int8"][2] / fp_ppl - 1)
    speedup = rows["int8"][1] / fp_tps
    if args.speed_layers:
        big_cfg = registry.preset("llama3.2-1b", vocab_size=cfg.vocab_size, num_hidden_layers=args.speed_layers,
                                  rope_scaling=None, bos_token_id=cfg.bos_token_id, eos_token_id=cfg.eos_token_id)
        big = registry.build_model(big_cfg).eval()
        print(f"speed model: Llama-3.2-1B layer shapes, {args.speed_layers} layers, vocab {cfg.vocab_size}, "
              f"{sum(p.numel() for p in big.parameters()) / 1e6:.0f}M params, random weights")
        speed = {}
        for name in VARIANTS:
            model = variant(big, name)
            speed[name] = decode_tokens_per_s(model, tokenizer, max(8, args.new_tokens // 4), args.repeats)
            print(f"{name:12} {model_bytes(model) / 1e6:8.1f} MB {speed[name]:8.2f} tok/s "
                  f"(x{speed[name] / speed.get('fp32', speed[name]):.2f} vs fp32)", flush=True)
            del model
        speedup = speed["int8"] / speed["fp32"]
        print(f"int8 decode x{speedup:.2f} vs fp32, x{speed['int8'] / speed['bf16']:.2f} vs bf16 (1B-shaped model); "
              f"int8-dynamic x{speed['int8-dynamic'] / speed['fp32']:.2f} vs fp32")
    print(f"result: int8_ppl_increase={int8_increase:.2f}% int8_speedup={speedup:.2f}")


VARIANTS = ("fp32", "bf16", "int8", "int4", "int8-dynamic")


def variant(base: torch.nn.Module, name: str) -> torch.nn.Module:
    if name == "fp32":
        return base
    if name == "bf16":
        return copy.deepcopy(base).to(torch.bfloat16)
    return quantize_model(copy.deepcopy(base), name, group_size=64)

if __name__ == "__main__":
    main()
