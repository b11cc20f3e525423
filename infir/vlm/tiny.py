"""A randomly initialised tiny LM (+ BPE tokenizer trained on the VLM texts) for CPU runs and tests.

Real runs start from a pretrained InfiR LM folder; this exists so the VLM room runs on its own.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from infir.model import registry
from infir.model.chat_template import header
from infir.model.hf_io import save_model
from infir.model.tokenizer import train_bpe_tokenizer
from infir.utils.log import get_logger
from infir.vlm.processor import IMAGE_PLACEHOLDER

log = get_logger(__name__)


def sample_texts(data_dir: Path, limit_per_kind: int = 2000) -> list[str]:
    texts = [header(r) for r in ("system", "user", "assistant")]
    for path in sorted(data_dir.glob("*.json")):
        if path.name == "pools.json":
            continue
        for s in json.loads(path.read_text())[:limit_per_kind]:
            for turn in s.get("conversations", []):
                texts.append(turn["value"].replace(IMAGE_PLACEHOLDER, ""))
            if "instruction" in s:
                texts.append(s["instruction"])
    return texts


def warm_up_on_texts(model: nn.Module, tok, texts: list[str], steps: int, batch_size: int = 32, seq_len: int = 64,
                     lr: float = 3e-3, seed: int = 0) -> list[float]:
    """Next-token training on the VLM data's texts alone (no images), as a stand-in for the pretrained LM
    the real recipe starts from: words used alike (colours, shapes) get related embeddings before any
    image is seen. Documents are packed into one stream and cut into `seq_len` windows. Returns losses."""
    eot = tok.convert_tokens_to_ids("<|eot_id|>")
    stream: list[int] = []
    for text in texts:
        stream += [tok.bos_token_id, *tok(text, add_special_tokens=False)["input_ids"], eot]
    if len(stream) < seq_len:
        raise ValueError(f"text warm-up needs at least {seq_len} tokens of text, got {len(stream)}")
    data = torch.tensor(stream[: len(stream) // seq_len * seq_len]).view(-1, seq_len)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    losses = []
    model.train()
    for step in range(steps):
        batch = data[torch.randint(len(data), (batch_size,), generator=gen)]
        logits = model(batch[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())
        for g in opt.param_groups:
            g["lr"] = lr * min(1.0, (step + 1) / 20)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    model.eval()
    return losses


def make_tiny_lm(out_dir: Path, texts: list[str], preset: str = "micro", vocab_size: int = 512,
                 seed: int = 0, init_std: float = 0.15, text_warmup_steps: int = 0, **overrides) -> Path:
    """Train a byte-level BPE tokenizer on `texts` and save a random LM of `preset` (a registry preset) with it.

    `init_std` (about 1/sqrt(hidden) for the micro preset, not Llama's 0.02): with 0.02 the random
    attention is flat and the toy LM learns the answer format long before it learns to look at the
    image tokens; a wider init lets attention pick out the one element patch of single-element
    screens within ~200 steps (measured with the tiny recipe's vision settings).
    """
    torch.manual_seed(seed)
    overrides.setdefault("initializer_range", init_std)
    tok = train_bpe_tokenizer(texts, vocab_size=vocab_size)
    cfg = registry.preset(preset, vocab_size=len(tok), bos_token_id=tok.bos_token_id,
                          eos_token_id=tok.convert_tokens_to_ids("<|end_of_text|>"),
                          pad_token_id=tok.pad_token_id, **overrides)
    model = registry.build_model(cfg)
    if text_warmup_steps:
        losses = warm_up_on_texts(model, tok, texts, text_warmup_steps, seed=seed)
        log.info("toy LM warmed up on the VLM texts: %d steps, loss %.3f -> %.3f", text_warmup_steps,
                 losses[0], sum(losses[-20:]) / len(losses[-20:]))
    save_model(model, out_dir, tokenizer=tok)
    log.info("tiny %s LM (%s, vocab %d) written to %s", "text-warmed" if text_warmup_steps else "random",
             preset, len(tok), out_dir)
    return Path(out_dir)
