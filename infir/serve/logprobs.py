"""OpenAI legacy-completions `logprobs` (with `echo`), so clients can score text through the server.

The shape is the one vLLM and OpenAI return on /v1/completions: `tokens`, `token_logprobs` (None for
the first token, which has no context), `top_logprobs` (a dict per token, None for the first) and
`text_offset` (character offset of each token in the returned text).
"""

from __future__ import annotations

from typing import Any

import torch


@torch.inference_mode()
def token_logprobs(model: Any, ids: list[int]) -> torch.Tensor:
    """log p(token | previous tokens) for every position: [T, V] log-softmax of the next-token logits."""
    logits = model(torch.tensor([ids], dtype=torch.long))[0].float()
    return torch.log_softmax(logits, dim=-1)


def completion_logprobs(model: Any, tokenizer: Any, prompt_ids: list[int], completion_ids: list[int],
                        echo: bool, top: int, skip_leading_bos: bool) -> dict[str, Any]:
    """Logprobs of the completion tokens (and, with `echo`, of the prompt tokens before them).

    `skip_leading_bos`: the server added a BOS the client never wrote; it gets no entry, and text
    offsets count from the client's own text.
    """
    ids = prompt_ids + completion_ids
    logp = token_logprobs(model, ids)
    first = 1 if skip_leading_bos else 0
    out: dict[str, Any] = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
    for i in range(first if echo else len(prompt_ids), len(ids)):
        out["tokens"].append(tokenizer.decode([ids[i]], skip_special_tokens=False))
        # Offsets count from the start of the client's prompt (OpenAI's convention, with or without echo).
        out["text_offset"].append(len(tokenizer.decode(ids[first:i], skip_special_tokens=False)))
        if i == 0:
            out["token_logprobs"].append(None)
            out["top_logprobs"].append(None)
            continue
        out["token_logprobs"].append(float(logp[i - 1, ids[i]]))
        top_entries: dict[str, float] = {}
        if top > 0:
            values, indices = logp[i - 1].topk(top)
            for v, j in zip(values.tolist(), indices.tolist(), strict=True):
                top_entries[tokenizer.decode([int(j)], skip_special_tokens=False)] = float(v)
        out["top_logprobs"].append(top_entries)
    return out
