"""Batched greedy decoding for the VLM: left-padded prompts, image features spliced in, a KV cache."""

from __future__ import annotations

from typing import Any

import torch

from infir.utils.log import get_logger
from infir.vlm.dataset import ImageCache
from infir.vlm.model import VisionLanguageModel
from infir.vlm.processor import ConversationEncoder, collate_prompts, sample_images

log = get_logger(__name__)


@torch.no_grad()
def generate(model: VisionLanguageModel, tokenizer: Any, encoder: ConversationEncoder, cache: ImageCache,
             samples: list[dict], max_new_tokens: int = 48, batch_size: int = 32,
             device: torch.device | str = "cpu") -> list[str]:
    """Greedy completions of each sample's conversation (its last assistant turn, if any, is dropped)."""
    device = torch.device(device)
    stop_ids = {encoder.eot_id, tokenizer.convert_tokens_to_ids("<|end_of_text|>")}
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else encoder.eot_id
    outputs: list[str] = []
    cut = 0
    for i in range(0, len(samples), batch_size):
        chunk = samples[i : i + batch_size]
        prompts = [encoder.encode(s, add_generation_prompt=True)["input_ids"] for s in chunk]
        ids, mask = collate_prompts(prompts, pad_id)
        ids, mask = ids.to(device), mask.to(device)
        pixels = cache.stack([p for s in chunk for p in sample_images(s)])
        embeds = model.embed(ids, None if pixels is None else pixels.to(device))
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        kv = model.lm.new_kv_cache(len(chunk), ids.shape[1] + max_new_tokens)
        logits = model.lm(ids, inputs_embeds=embeds, position_ids=positions, kv_cache=kv, attention_mask=mask)
        next_pos = positions[:, -1] + 1
        done = torch.zeros(len(chunk), dtype=torch.bool, device=device)
        generated: list[list[int]] = [[] for _ in chunk]
        for _ in range(max_new_tokens):
            token = logits[:, -1].argmax(-1)
            for b, t in enumerate(token.tolist()):
                if not done[b]:
                    if t in stop_ids:
                        done[b] = True
                    else:
                        generated[b].append(t)
            if bool(done.all()):
                break
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            logits = model.lm(token[:, None], position_ids=next_pos[:, None], kv_cache=kv, attention_mask=mask)
            next_pos = next_pos + 1
        ends = torch.tensor(sorted(stop_ids), device=device)
        done |= torch.isin(logits[:, -1].argmax(-1), ends)  # the token after the last one kept would end it
        cut += int((~done).sum())
        outputs += [tokenizer.decode(g, skip_special_tokens=True) for g in generated]
    if cut:
        log.warning("%d of %d completions reached max_new_tokens=%d before an end token: answers may be cut off "
                    "(raise eval.max_new_tokens)", cut, len(samples), max_new_tokens)
    return outputs
