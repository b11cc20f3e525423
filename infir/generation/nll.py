"""Per-token NLL of held-out texts for any loaded model (an infir model or a transformers causal LM)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def per_token_nll(model: Any, tokenizer: Any, texts: Sequence[str], batch_size: int = 8) -> float:
    """Sum of -log p(token | previous tokens) over all texts divided by the number of scored tokens.

    Each text starts after the tokenizer's BOS (its first token is scored against BOS); texts longer
    than the model's context keep their last tokens.
    """
    from infir.model.base import is_causal_lm

    if is_causal_lm(model):
        from infir.generation.engine import InfirGenerator

        scorer: Any = InfirGenerator(model, tokenizer, eos_ids=set())
    else:
        from infir.generation.hf import HFGenerator

        scorer = HFGenerator(model, tokenizer, eos_ids=set())
    scores = scorer.loglikelihood([("", t) for t in texts], batch_size=batch_size)
    tokens = sum(n for _, n in scores)
    return -sum(s for s, _ in scores) / max(1, tokens)
