"""VLM answers through the one inference engine: image features spliced into each prompt's embeddings.

The conversation is encoded (image tokens expanded), the VLM computes its input embeddings (token embeddings with
the image-token slots replaced by projected image features), and `infir.generation.engine.InfirGenerator`
decodes from those embeddings as a prefix: its batching, KV cache, decode modes (CUDA graphs on GPU), EOS ids
and max-token handling are the same as for text. Samples are embedded a chunk (`batch_size`) at a time, so the
image features of a whole evaluation set are never held at once.
"""

from __future__ import annotations

from typing import Any

import torch

from infir.generation import SamplingParams
from infir.generation.engine import EmbeddedPrompt, InfirGenerator
from infir.utils.log import get_logger
from infir.vlm.dataset import ImageCache
from infir.vlm.model import VisionLanguageModel
from infir.vlm.processor import ConversationEncoder, collate_prompts, sample_images

log = get_logger(__name__)


@torch.no_grad()
def embedded_prompts(model: VisionLanguageModel, encoder: ConversationEncoder, cache: ImageCache,
                     samples: list[dict], pad_id: int, device: torch.device) -> list[EmbeddedPrompt]:
    """Each sample's prompt ids (ending in the assistant header) with its input embeddings (image features in)."""
    prompts = [encoder.encode(s, add_generation_prompt=True)["input_ids"] for s in samples]
    ids, _ = collate_prompts(prompts, pad_id)
    pixels = cache.stack([p for s in samples for p in sample_images(s)])
    embeds = model.embed(ids.to(device), None if pixels is None else pixels.to(device))
    width = ids.shape[1]
    return [EmbeddedPrompt([int(t) for t in p], embeds[r, width - len(p):]) for r, p in enumerate(prompts)]


def generate(model: VisionLanguageModel, tokenizer: Any, encoder: ConversationEncoder, cache: ImageCache,
             samples: list[dict], max_new_tokens: int = 48, batch_size: int = 32,
             device: torch.device | str = "cpu") -> list[str]:
    """Greedy completions of each sample's conversation (its last assistant turn, if any, is dropped)."""
    device = torch.device(device)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else encoder.eot_id
    engine = InfirGenerator(model.lm, tokenizer, batch_size=batch_size)
    params = SamplingParams(max_new_tokens=max_new_tokens)
    outputs: list[str] = []
    cut = 0
    for i in range(0, len(samples), batch_size):
        chunk = samples[i : i + batch_size]
        done = engine.generate(embedded_prompts(model, encoder, cache, chunk, pad_id, device), params)
        cut += sum(c.finish_reason == "length" for c in done)
        outputs += [tokenizer.decode(c.token_ids, skip_special_tokens=True) for c in done]
    if cut:
        log.warning("%d of %d completions reached max_new_tokens=%d before an end token: answers may be cut off "
                    "(raise eval.max_new_tokens)", cut, len(samples), max_new_tokens)
    return outputs
