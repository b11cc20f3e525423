"""The CUDA-only code paths against their CPU-tested references (skipped without a GPU).

Run on a GPU machine: `python -m pytest tests/gpu -q`. Covers flex attention document masking,
the compiled bf16 training loop, the chunked loss in bf16, and CUDA-graph decoding.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from infir.model.llama import PRESETS, Llama

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _packed_batch(vocab: int, b: int, t: int, eos: int, seed: int) -> dict[str, torch.Tensor]:
    from infir.train.tokenized import pack_row

    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(b):
        tokens = rng.integers(0, vocab - 2, t + 1)
        for cut in sorted(rng.choice(np.arange(20, t - 20), size=3, replace=False)):
            tokens[cut] = eos
        rows.append(pack_row(tokens, eos))
    return {k: torch.from_numpy(np.stack([r[k] for r in rows])).long() for k in rows[0]}


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


def test_flex_document_mask_equals_dense_sdpa() -> None:
    torch.manual_seed(0)
    model = Llama(PRESETS["tiny"]).cuda().eval()
    batch = {k: v.cuda() for k, v in _packed_batch(model.config.vocab_size, 2, 512, 5, seed=0).items()}
    with torch.no_grad():
        model.attn_impl = "sdpa"
        dense = model(batch["input_ids"], position_ids=batch["position_ids"], document_ids=batch["document_ids"])
        model.attn_impl = "flex"
        flex = model(batch["input_ids"], position_ids=batch["position_ids"], document_ids=batch["document_ids"])
        model.attn_impl = "auto"
    assert _rel(flex, dense) < 1e-3
    # a document's logits do not depend on the document before it
    with torch.no_grad():
        ids = batch["input_ids"].clone()
        first_end = int((batch["document_ids"][0] == batch["document_ids"][0, 0]).sum())
        ids[0, : first_end - 1] = (ids[0, : first_end - 1] + 7) % model.config.vocab_size
        changed = model(ids, position_ids=batch["position_ids"], document_ids=batch["document_ids"])
    assert _rel(changed[0, first_end:], flex[0, first_end:]) < 1e-3


def test_chunked_cross_entropy_bf16_matches_reference() -> None:
    from infir.train.loss import linear_cross_entropy, reference_cross_entropy

    torch.manual_seed(0)
    h = torch.randn(3000, 256, device="cuda", requires_grad=True)
    w = (torch.randn(5000, 256, device="cuda") * 0.05).requires_grad_()
    y = torch.randint(0, 5000, (3000,), device="cuda")
    y[::7] = -100
    loss, _ = linear_cross_entropy(h, w, y, chunk_size=1024, compute_dtype=torch.bfloat16)
    loss.backward()
    gh, gw = h.grad.clone(), w.grad.clone()
    h.grad = w.grad = None
    ref = reference_cross_entropy(h.double(), w.double(), y)
    ref.backward()
    assert abs(float(loss) - float(ref)) / float(ref) < 1e-2
    assert _rel(gh, h.grad) < 2e-2 and _rel(gw, w.grad) < 2e-2


@pytest.mark.parametrize("compile_", [False, True])
def test_bf16_training_loop_on_cuda(tmp_path: Path, compile_: bool) -> None:
    """The real loop (fused AdamW, bf16 autocast, flex masks; compiled blocks) learns, and equals fp32 closely."""
    from infir.train.config import TrainConfig
    from infir.train.distributed import DistEnv
    from infir.train.loop import train

    env = DistEnv(rank=0, world_size=1, local_rank=0, device=torch.device("cuda"))
    batch = _packed_batch(PRESETS["tiny"].vocab_size, 4, 256, 5, seed=1)
    batches = [batch] * 30  # one batch again and again: loss must fall fast

    def run(dtype: str, out: Path) -> list[float]:
        torch.manual_seed(0)
        cfg = TrainConfig(model="tiny", seq_len=256, micro_batch_size=4, global_batch_size=4, max_steps=30,
                          optimizer={"lr": 3e-3}, schedule={"kind": "constant", "warmup_steps": 2},
                          runtime={"compile": compile_ and dtype == "bf16", "dtype": dtype},
                          checkpoint={"interval": 0}, logging={"tensorboard": False})
        train(Llama(PRESETS["tiny"]), batches, cfg, out, env=env, total_steps=30)
        return [json.loads(x)["loss"] for x in (out / "metrics.jsonl").read_text().splitlines()]

    bf16 = run("bf16", tmp_path / "bf16")
    fp32 = run("fp32", tmp_path / "fp32")
    assert bf16[-1] < 0.5 * bf16[0]
    assert max(abs(a - b) for a, b in zip(bf16[:3], fp32[:3], strict=True)) < 0.05


def test_cuda_graph_decode_equals_dynamic(tmp_path: Path) -> None:
    from infir.generation import SamplingParams
    from infir.generation.engine import InfirGenerator
    from infir.model.tokenizer import train_bpe_tokenizer

    texts = [f"Question {i}: what is {i} plus {i * 3}? Answer: {i * 4}." for i in range(200)]
    tokenizer = train_bpe_tokenizer(texts, vocab_size=512)
    cfg = PRESETS["micro"]
    cfg = type(cfg)(**{**cfg.__dict__, "vocab_size": len(tokenizer), "eos_token_id": tokenizer.eos_token_id})
    torch.manual_seed(0)
    model = Llama(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(8.0 if p.dim() > 1 else 1.0)
    model = model.cuda()
    prompts = [f"Question {i}: what is" + " seven" * (i % 4) for i in range(6)]
    budgets = [SamplingParams(max_new_tokens=4 + 3 * i) for i in range(6)]  # rows finish at different steps
    dyn = InfirGenerator(model, tokenizer, eos_ids=set(), decode="dynamic").generate(prompts, budgets)
    graph = InfirGenerator(model, tokenizer, eos_ids=set(), decode="cuda_graph").generate(prompts, budgets)
    assert [c.token_ids for c in graph] == [c.token_ids for c in dyn]
    assert [len(c.token_ids) for c in graph] == [4 + 3 * i for i in range(6)]
