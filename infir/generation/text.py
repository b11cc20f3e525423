"""Tokenizer-side helpers shared by every engine: prompt encoding, chat rendering, stop strings, EOS ids,
incremental detokenization."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

Prompt = str | list[int]
Message = dict[str, str]


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
    """EOS ids from generation_config.json, the model config, the tokenizer, and the end-of-text / end-of-turn
    tokens of every architecture in infir's registry that the tokenizer has (`<|eot_id|>`, `<|im_end|>`, ...)."""
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
    from infir.model.registry import end_of_sequence_tokens, token_ids

    ids.update(token_ids(tokenizer, end_of_sequence_tokens()))
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
