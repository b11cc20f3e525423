"""The generation interface every engine implements (see `infir.generation` for the room's map).

`Generator.generate(prompts, params)` returns one `Completion` per prompt; in-process engines derive from
`LocalGenerator`, which adds chat rendering (`generate_chat`) and log-likelihoods (`loglikelihood`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from infir.generation.text import render_chat

OnToken = Callable[[int, int, str], None]
Prompt = str | list[int]
Message = dict[str, str]


@dataclass
class SamplingParams:
    max_new_tokens: int = 256
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None


@dataclass
class Completion:
    text: str  # generated text, cut before a stop string; EOS is not included
    token_ids: list[int]
    finish_reason: Literal["stop", "length"]
    prompt_tokens: int


@runtime_checkable
class Generator(Protocol):
    def generate(
        self,
        prompts: Sequence[Prompt],
        params: SamplingParams | Sequence[SamplingParams],
        on_token: OnToken | None = None,
    ) -> list[Completion]: ...


def per_request(params: SamplingParams | Sequence[SamplingParams], n: int) -> list[SamplingParams]:
    if isinstance(params, SamplingParams):
        return [params] * n
    params = list(params)
    if len(params) != n:
        raise ValueError(f"got {len(params)} SamplingParams for {n} prompts")
    return params


class LocalGenerator:
    """Shared parts of the in-process engines: chat rendering and log-likelihoods need a tokenizer."""

    tokenizer: Any

    def generate(
        self,
        prompts: Sequence[Prompt],
        params: SamplingParams | Sequence[SamplingParams],
        on_token: OnToken | None = None,
    ) -> list[Completion]:
        raise NotImplementedError

    def generate_chat(
        self,
        conversations: Sequence[Sequence[Message]],
        params: SamplingParams | Sequence[SamplingParams],
        on_token: OnToken | None = None,
    ) -> list[Completion]:
        return self.generate([render_chat(self.tokenizer, c) for c in conversations], params, on_token)

    def loglikelihood(
        self, requests: Sequence[tuple[str, str]], batch_size: int = 8
    ) -> list[tuple[float, int]]:
        """(sum of log p(continuation | context), number of continuation tokens) per request."""
        from infir.generation.loglik import loglikelihoods

        return loglikelihoods(self._logits_fn, self.tokenizer, requests, batch_size=batch_size)

    def _logits_fn(self, input_ids: Any, attention_mask: Any, positions: Any) -> Any:
        raise NotImplementedError
