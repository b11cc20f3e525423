"""Qwen2 on the CUDA-graph decode path (skipped without a GPU): the captured static step carries the q/k/v
biases and equals dynamic decoding, also after an embedding prefix (the VLM's prefill)."""

from __future__ import annotations

import pytest
import torch

from infir.model import registry

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_qwen2_cuda_graph_decode_equals_dynamic() -> None:
    from infir.generation import SamplingParams
    from infir.generation.engine import EmbeddedPrompt, InfirGenerator
    from infir.model.tokenizer import train_bpe_tokenizer

    texts = [f"Question {i}: what is {i} plus {i * 3}? Answer: {i * 4}." for i in range(200)]
    tokenizer = train_bpe_tokenizer(texts, vocab_size=400, family="qwen2")
    cfg = registry.preset("qwen2-micro", vocab_size=len(tokenizer), tie_word_embeddings=False,
                          eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    model = registry.build_model(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0.0, 0.5)
            elif p.dim() > 1:
                p.mul_(8.0)
    model = model.cuda()
    prompts = [f"Question {i}: what is" + " seven" * (i % 4) for i in range(6)]
    budgets = [SamplingParams(max_new_tokens=4 + 3 * i) for i in range(6)]  # rows finish at different steps
    dyn = InfirGenerator(model, tokenizer, eos_ids=set(), decode="dynamic").generate(prompts, budgets)
    graph = InfirGenerator(model, tokenizer, eos_ids=set(), decode="cuda_graph").generate(prompts, budgets)
    assert [c.token_ids for c in graph] == [c.token_ids for c in dyn]
    assert [len(c.token_ids) for c in graph] == [4 + 3 * i for i in range(6)]
    with torch.no_grad():
        ids = [tokenizer.encode(p) for p in prompts[:3]]
        embedded = [EmbeddedPrompt(x, model.embed_tokens(torch.tensor(x, device="cuda")) + 0.1) for x in ids]
    dyn = InfirGenerator(model, tokenizer, eos_ids=set(), decode="dynamic").generate(embedded, budgets[:3])
    graph = InfirGenerator(model, tokenizer, eos_ids=set(), decode="cuda_graph").generate(embedded, budgets[:3])
    assert [c.token_ids for c in graph] == [c.token_ids for c in dyn]
