"""Batched text generation behind one small interface (the Generation API contract).

Three engines implement `Generator`:

- `InfirGenerator`: infir `Llama` models with a preallocated KV cache, left padding, per-request
  sampling parameters, stop strings, EOS ids, token streaming, finished rows dropped from the batch
  (`infir.eval.infir_engine`; optional CUDA-graph decode step in `infir.eval.static_decode`);
- `HFGenerator`: any local transformers causal LM via `generate` (`infir.eval.hf_backend`);
- `OpenAIGenerator`: an OpenAI-compatible server such as `infir serve` or vLLM (`infir.eval.http_backend`).

`load_generator(path_or_url)` picks the right one. Besides `generate`, all three offer
`generate_chat(conversations, params)` (chat template applied by the engine or server) and
`loglikelihood([(context, continuation)]) -> [(sum log p, n tokens)]` (multiple choice, NLL).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

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


class IncrementalDetokenizer:
    """Turns a growing list of token ids into text pieces without re-decoding everything each step.

    Holds back pieces that end in an incomplete UTF-8 sequence (decoded as U+FFFD) until completed.
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.prefix_offset = 0
        self.read_offset = 0
        self.text = ""

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        prefix = self._decode(self.ids[self.prefix_offset : self.read_offset])
        full = self._decode(self.ids[self.prefix_offset :])
        if len(full) > len(prefix) and not full.endswith("\ufffd"):
            piece = full[len(prefix) :]
            self.prefix_offset, self.read_offset = self.read_offset, len(self.ids)
            self.text += piece
            return piece
        return ""


def find_stop(text: str, stops: Sequence[str], new_chars: int) -> int | None:
    """Index of the earliest stop string that ends within the last `new_chars` characters of `text`."""
    best = None
    for stop in stops:
        if not stop:
            continue
        start = max(0, len(text) - new_chars - len(stop) + 1)
        i = text.find(stop, start)
        if i >= 0 and (best is None or i < best):
            best = i
    return best


def eos_ids_for(
    model_dir: Path | None, tokenizer: Any, config_eos: int | list[int] | None = None
) -> set[int]:
    """EOS ids from generation_config.json, the model config, the tokenizer and `<|eot_id|>`."""
    ids: set[int] = set()

    def add(value: Any) -> None:
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(v for v in value if isinstance(v, int))

    add(config_eos)
    if model_dir is not None and (model_dir / "generation_config.json").exists():
        add(json.loads((model_dir / "generation_config.json").read_text()).get("eos_token_id"))
    add(getattr(tokenizer, "eos_token_id", None))
    vocab = tokenizer.get_vocab()
    for name in ("<|eot_id|>", "<|end_of_text|>", "<|im_end|>", "<|endoftext|>"):
        if name in vocab:
            ids.add(vocab[name])
    return ids


def encode_prompt(tokenizer: Any, prompt: Prompt) -> list[int]:
    """Token ids of a prompt; text gets the tokenizer's BOS once (chat renderings already carry it)."""
    if not isinstance(prompt, str):
        return [int(t) for t in prompt]
    ids = tokenizer.encode(prompt, add_special_tokens=False)
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is not None and (not ids or ids[0] != bos):
        ids = [bos, *ids]
    return ids


def render_chat(tokenizer: Any, messages: Sequence[Message]) -> str:
    """A conversation rendered with the tokenizer's chat template, ending in the assistant header."""
    return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)


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
        from infir.eval.loglik import loglikelihoods

        return loglikelihoods(self._logits_fn, self.tokenizer, requests, batch_size=batch_size)

    def _logits_fn(self, input_ids: Any, attention_mask: Any, positions: Any) -> Any:
        raise NotImplementedError


def load_generator(
    path_or_url: str | Path, device: str | None = None, batch_size: int = 16, **kwargs: Any
) -> Any:
    """A generator for an infir/HF model folder, or an OpenAI-compatible server URL (http...)."""
    target = str(path_or_url)
    if target.startswith(("http://", "https://")):
        from infir.eval.http_backend import OpenAIGenerator

        return OpenAIGenerator(target, **kwargs)
    path = Path(target)
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"{path}: not a model folder (no config.json) and not an http(s) URL")
    config = json.loads((path / "config.json").read_text())
    if config.get("model_type") == "llama" and "vision_config" not in config:
        from infir.eval.infir_engine import InfirGenerator

        return InfirGenerator.from_pretrained(path, device=device, batch_size=batch_size)
    from infir.eval.hf_backend import HFGenerator

    return HFGenerator.from_pretrained(path, device=device, batch_size=batch_size)
