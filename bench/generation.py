"""Generated tokens/s: infir's batched generation vs transformers `generate`, same model/batch/prompts.

    .venv/bin/python bench/generation.py --quick        # 2-core CPU, tiny model, a minute
    python bench/generation.py                          # GPU: Llama-3.2-1B shapes (random weights), bf16

Both engines decode greedily for exactly --new-tokens tokens (no EOS) from the same left-padded
prompts; how many outputs are identical is printed too. Last line:
`result: speedup_vs_hf_generate=X`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch


def build(preset: str, device: str, dtype: torch.dtype, tmp: Path):
    from transformers import AutoModelForCausalLM

    from infir.model import registry
    from infir.model.hf_io import save_model
    from infir.model.tokenizer import train_bpe_tokenizer

    texts = [
        f"Question {i}: what is {i} plus {i * 3}? Answer: {i * 4}. The quick brown fox." for i in range(400)
    ]
    tokenizer = train_bpe_tokenizer(texts, vocab_size=1024, family="qwen2" if preset.startswith("qwen") else "llama3")
    base = registry.preset(preset)
    cfg = registry.preset(preset, vocab_size=max(len(tokenizer), base.vocab_size if preset != "micro" else 0))
    torch.manual_seed(0)
    model = registry.build_model(cfg)
    save_model(model, tmp / "model", tokenizer=tokenizer)
    ours = model.to(device=device, dtype=dtype).eval()
    hf = AutoModelForCausalLM.from_pretrained(str(tmp / "model"), dtype=dtype).to(device).eval()
    return ours, hf, tokenizer


def timed(fn, device: str) -> tuple[float, object]:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="CPU, tiny model, small batch")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--new-tokens", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--decode",
        choices=["auto", "dynamic", "static", "cuda_graph"],
        default="auto",
        help="infir decode step (auto: cuda_graph on CUDA, dynamic on CPU)",
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="CPU threads (1 is fastest on a shared 2-core box)"
    )
    parser.add_argument("--preset", default=None, help="any registry preset (default: tiny on CPU, "
                        "llama3.2-1b on GPU; e.g. qwen2-tiny, qwen2.5-0.5b)")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() and not args.quick else "cpu"
    preset = args.preset or ("tiny" if args.quick or device == "cpu" else "llama3.2-1b")
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    batch = args.batch or (8 if args.quick else 16)
    new_tokens = args.new_tokens or (48 if args.quick else 256)
    torch.set_num_threads(args.threads if device == "cpu" else torch.get_num_threads())

    from infir.generation import SamplingParams
    from infir.generation.engine import InfirGenerator
    from infir.generation.text import encode_prompt

    with tempfile.TemporaryDirectory() as tmp:
        ours_model, hf_model, tokenizer = build(preset, device, dtype, Path(tmp))
    prompts = [f"Question {i}: what is {i} plus {'seven ' * (i % 5)}? Answer:" for i in range(batch)]
    decode = args.decode if args.decode != "auto" else ("cuda_graph" if device == "cuda" else "dynamic")
    ours = InfirGenerator(ours_model, tokenizer, eos_ids=set(), batch_size=batch, decode=decode)
    params = SamplingParams(max_new_tokens=new_tokens)

    encoded = [ours._fit(encode_prompt(tokenizer, p), new_tokens) for p in prompts]
    width = max(len(e) for e in encoded)
    ids = torch.full((batch, width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for r, e in enumerate(encoded):
        ids[r, width - len(e) :] = torch.tensor(e)
        mask[r, width - len(e) :] = 1
    ids, mask = ids.to(device), mask.to(device)

    def run_hf():
        with torch.inference_mode():
            return hf_model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )

    def run_ours():
        return ours.generate(prompts, params)

    run_ours(), run_hf()  # warm-up
    t_ours = min(timed(run_ours, device)[0] for _ in range(args.repeats))
    t_hf = min(timed(run_hf, device)[0] for _ in range(args.repeats))
    ours_out = run_ours()
    hf_out = run_hf()[:, width:].tolist()
    same = sum(o.token_ids == h for o, h in zip(ours_out, hf_out, strict=True))
    tokens = batch * new_tokens
    print(
        f"device={device} preset={preset} dtype={dtype} decode={decode} batch={batch} new_tokens={new_tokens} "
        f"prompt_width={width}"
    )
    print(f"identical greedy outputs: {same}/{batch}")
    print(
        f"fixed length:    infir {tokens / t_ours:.1f} tok/s ({t_ours:.3f} s)   "
        f"hf generate {tokens / t_hf:.1f} tok/s ({t_hf:.3f} s)   speedup {t_hf / t_ours:.2f}"
    )

    # Eval-like: rows end at different lengths (as with EOS/stop strings), here by per-row budgets
    # spread from new_tokens/batch to new_tokens. infir drops finished rows from the batch; one
    # `generate` call computes every row until the longest is done.
    budgets = [max(1, new_tokens * (r + 1) // batch) for r in range(batch)]
    varied = [SamplingParams(max_new_tokens=b) for b in budgets]

    def run_ours_varied():
        return ours.generate(prompts, varied)

    run_ours_varied()
    v_ours, v_out = min((timed(run_ours_varied, device) for _ in range(args.repeats)), key=lambda x: x[0])
    assert [len(o.token_ids) for o in v_out] == budgets
    useful = sum(budgets)
    print(
        f"variable length ({useful} useful tokens): infir {useful / v_ours:.1f} tok/s   "
        f"hf generate {useful / t_hf:.1f} tok/s   speedup {t_hf / v_ours:.2f}"
    )
    print(f"result: speedup_vs_hf_generate={t_hf / t_ours:.2f}")  # the fixed-length figure (conservative)


if __name__ == "__main__":
    main()
