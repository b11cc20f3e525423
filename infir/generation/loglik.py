"""Log-likelihood of continuations given contexts (multiple-choice scoring, held-out NLL)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

# (input_ids [B,T], attention_mask [B,T], rows [N], cols [N]) -> logits [N, V] at those positions
LogitsAt = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def split_tokens(tokenizer: Any, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Context ids (with BOS) and continuation ids, tokenized together where the boundary allows."""
    from infir.generation.text import encode_prompt

    ctx = encode_prompt(tokenizer, context)
    whole = encode_prompt(tokenizer, context + continuation)
    if whole[: len(ctx)] == ctx and len(whole) > len(ctx):
        return ctx, whole[len(ctx) :]
    return ctx, tokenizer.encode(continuation, add_special_tokens=False)


@torch.no_grad()
def loglikelihoods(
    logits_at: LogitsAt,
    tokenizer: Any,
    requests: Sequence[tuple[str, str]],
    batch_size: int = 8,
    device: Any = "cpu",
    max_length: int | None = None,
) -> list[tuple[float, int]]:
    """(sum log p(continuation | context), continuation length in tokens) for each (context, continuation).

    Sequences are right-padded and sorted by length so batches waste little; contexts are cut from
    the left when `max_length` is given.
    """
    encoded = [split_tokens(tokenizer, c, x) for c, x in requests]
    # Single-token continuations of one context (MMLU's " A".." D") share one forward pass.
    merged: dict[tuple[int, ...], list[int]] = {}
    singles: dict[int, tuple[tuple[int, ...], int]] = {}
    for i, (ctx, cont) in enumerate(encoded):
        if len(cont) == 1 and ctx and (max_length is None or len(ctx) < max_length):
            merged.setdefault(tuple(ctx), []).append(i)
            singles[i] = (tuple(ctx), cont[0])
    results: list[tuple[float, int]] = [(0.0, 0)] * len(encoded)
    if merged:
        keys = list(merged)
        scores = _next_token_logprobs(
            logits_at, [list(k) for k in keys], batch_size, device, pad_of(tokenizer)
        )
        for key, logp in zip(keys, scores, strict=True):
            for i in merged[key]:
                results[i] = (float(logp[singles[i][1]]), 1)
    rest = [i for i in range(len(encoded)) if i not in singles]
    order = sorted(rest, key=lambda i: -(len(encoded[i][0]) + len(encoded[i][1])))
    pad = pad_of(tokenizer)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        seqs, spans = [], []
        for i in idx:
            ctx, cont = encoded[i]
            seq = ctx + cont
            if max_length is not None and len(seq) > max_length:
                seq = seq[-max_length:]
            seqs.append(seq)
            spans.append((len(seq) - len(cont), len(seq)))
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        rows, cols, targets = [], [], []
        for r, (seq, (a, b)) in enumerate(zip(seqs, spans, strict=False)):
            ids[r, : len(seq)] = torch.tensor(seq)
            mask[r, : len(seq)] = 1
            for p in range(max(a, 1), b):  # logits at p-1 predict token p (token 0 has no context)
                rows.append(r)
                cols.append(p - 1)
                targets.append(seq[p])
        rows_t, cols_t = torch.tensor(rows), torch.tensor(cols)
        logits = logits_at(ids.to(device), mask.to(device), rows_t.to(device), cols_t.to(device)).float()
        dev = logits.device
        logp = torch.log_softmax(logits, dim=-1)[
            torch.arange(len(targets), device=dev), torch.tensor(targets, device=dev)
        ]
        offset = 0
        for r, i in enumerate(idx):
            n = spans[r][1] - max(spans[r][0], 1)
            results[i] = (float(logp[offset : offset + n].sum()), n)
            offset += n
    return results


def pad_of(tokenizer: Any) -> int:
    return getattr(tokenizer, "pad_token_id", None) or 0


def _next_token_logprobs(
    logits_at: LogitsAt, contexts: list[list[int]], batch_size: int, device: Any, pad: int
) -> list[torch.Tensor]:
    """log p(next token) over the vocabulary after each context, right-padded batches."""
    out: list[torch.Tensor] = [torch.empty(0)] * len(contexts)
    order = sorted(range(len(contexts)), key=lambda i: -len(contexts[i]))
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        width = max(len(contexts[i]) for i in idx)
        ids = torch.full((len(idx), width), pad, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for r, i in enumerate(idx):
            ids[r, : len(contexts[i])] = torch.tensor(contexts[i])
            mask[r, : len(contexts[i])] = 1
        rows = torch.arange(len(idx))
        cols = torch.tensor([len(contexts[i]) - 1 for i in idx])
        logits = logits_at(ids.to(device), mask.to(device), rows.to(device), cols.to(device)).float()
        logp = torch.log_softmax(logits, dim=-1).cpu()
        for r, i in enumerate(idx):
            out[i] = logp[r]
    return out
