"""Tokenizing conversations for SFT: chat template, assistant-only targets, truncation counted.

A sample keeps the whole token sequence `ids` and a boolean `target` per token: True for the
tokens of every assistant turn (its content and closing `<|eot_id|>`), False for the prompt
(system/user turns, headers, `<|begin_of_text|>`). Training predicts token t+1 from tokens <= t,
so a sample of n tokens gives n-1 (input, label) positions; `max_length` bounds those positions.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from infir.data.chats import Conversation, MalformedRecord, Quarantined
from infir.model.chat_template import LLAMA3_CHAT_TEMPLATE, render_chat
from infir.utils.log import get_logger, progress

log = get_logger(__name__)
IGNORE_INDEX = -100
# Llama 3.1/3.2 templates print today's date unless `date_string` is given: pin it, so training text
# never depends on the day it was rendered (their own default is this date).
FIXED_DATE_STRING = "26 Jul 2024"


@dataclass
class EncodedSample:
    ids: np.ndarray  # int32 [n] full token sequence (after truncation)
    target: np.ndarray  # bool [n] token is an assistant token (a label when predicted)
    domain: str = "general"
    truncated: bool = False

    @property
    def num_positions(self) -> int:
        """Input positions this sample occupies in a batch (n - 1)."""
        return len(self.ids) - 1

    def inputs_and_labels(self) -> tuple[np.ndarray, np.ndarray]:
        labels = np.where(self.target[1:], self.ids[1:], IGNORE_INDEX).astype(np.int64)
        return self.ids[:-1].astype(np.int64), labels


@dataclass
class EncodeStats:
    conversations: int = 0
    samples: int = 0
    truncated: int = 0
    tokens: int = 0
    target_tokens: int = 0
    quarantined: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {"conversations": self.conversations, "samples": self.samples, "truncated": self.truncated,
                "tokens": self.tokens, "target_tokens": self.target_tokens,
                "quarantined": sum(self.quarantined.values()),
                **{f"quarantined.{k}": v for k, v in sorted(self.quarantined.items())}}


class ConversationEncoder:
    """Render with the tokenizer's chat template (the Llama 3 one when it has none) and mark targets."""

    def __init__(self, tokenizer: Any, max_length: int = 4096) -> None:
        if max_length < 2:
            raise ValueError("max_length must be >= 2")
        self.tokenizer = tokenizer
        self.max_length = max_length
        template = getattr(tokenizer, "chat_template", None)
        self.uses_llama3_template = not template or template == LLAMA3_CHAT_TEMPLATE
        specials = sorted(getattr(tokenizer, "added_tokens_encoder", {}) or {}, key=len, reverse=True)
        self._control = re.compile("|".join(map(re.escape, specials))) if specials else None
        if self.uses_llama3_template:
            vocab = tokenizer.get_vocab()
            missing = [t for t in ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>") if t not in vocab]
            if missing:
                raise ValueError(f"tokenizer lacks the Llama 3 chat tokens {missing} and has no chat template")

    def render(self, messages: list[dict[str, str]], add_generation_prompt: bool = False) -> str:
        if self.uses_llama3_template:
            return render_chat(messages, add_generation_prompt=add_generation_prompt)
        if not messages:
            raise MalformedRecord("assistant_first: the tokenizer's template cannot render an empty prefix")
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt,
                                                  date_string=FIXED_DATE_STRING)

    def assistant_spans(self, messages: list[dict[str, str]]) -> tuple[str, list[tuple[int, int]]]:
        """The rendered text and the character spans of every assistant turn (content + end-of-turn)."""
        text = self.render(messages)
        spans = []
        for i, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            prompt = self.render(messages[:i], add_generation_prompt=True)
            through = self.render(messages[: i + 1])
            if not (through.startswith(prompt) and text.startswith(through)):
                raise MalformedRecord("template_not_prefix_stable: the chat template rewrites earlier turns")
            spans.append((len(prompt), len(through)))
        return text, spans

    def prepare(self, messages: list[dict[str, str]]) -> tuple[str, list[tuple[int, int]]]:
        """Check the content and render: (text, assistant character spans); raises MalformedRecord."""
        if self._control is not None:
            for m in messages:
                found = self._control.search(m["content"])
                if found:
                    raise MalformedRecord(f"control_token_in_content: {m['role']} content holds {found.group()!r}")
        return self.assistant_spans(messages)

    def finish(self, input_ids: list[int], offsets: list[tuple[int, int]], spans: list[tuple[int, int]],
               ) -> tuple[np.ndarray, np.ndarray, bool]:
        """Mark targets (tokens starting inside an assistant span) and truncate to max_length positions."""
        ids = np.asarray(input_ids, dtype=np.int32)
        starts = np.asarray([s for s, _ in offsets], dtype=np.int64)
        target = np.zeros(len(ids), dtype=bool)
        for lo, hi in spans:
            target |= (starts >= lo) & (starts < hi)
        truncated = len(ids) > self.max_length + 1
        if truncated:
            ids, target = ids[: self.max_length + 1], target[: self.max_length + 1]
        if not target[1:].any():
            raise MalformedRecord("no_target_after_truncation" if truncated else "no_target: no assistant tokens")
        return ids, target, truncated

    def encode(self, messages: list[dict[str, str]]) -> tuple[np.ndarray, np.ndarray, bool]:
        """(ids, target, truncated) for one conversation; raises MalformedRecord when unusable."""
        text, spans = self.prepare(messages)
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return self.finish(enc["input_ids"], enc["offset_mapping"], spans)


def encode_conversations(conversations: Iterable[Conversation], tokenizer: Any, max_length: int = 4096,
                         batch_size: int = 512) -> tuple[list[EncodedSample], EncodeStats, list[Quarantined]]:
    """Tokenize conversations (batched through the fast tokenizer); unusable ones are quarantined with a
    reason, truncations counted. Output order follows input order."""
    encoder = ConversationEncoder(tokenizer, max_length)
    conversations = list(conversations)
    samples: list[EncodedSample] = []
    stats, quarantined = EncodeStats(), []

    def reject(conv: Conversation, err: MalformedRecord) -> None:
        reason = str(err)
        stats.quarantined[reason.split(":")[0]] += 1
        quarantined.append(Quarantined(conv.source, reason, conv.to_dict()))

    with progress() as bar:
        task = bar.add_task("tokenize SFT", total=len(conversations))
        for lo in range(0, len(conversations), batch_size):
            chunk = conversations[lo : lo + batch_size]
            ready: list[tuple[Conversation, str, list[tuple[int, int]]]] = []
            for conv in chunk:
                stats.conversations += 1
                try:
                    ready.append((conv, *encoder.prepare(conv.messages)))
                except MalformedRecord as e:
                    reject(conv, e)
            enc = tokenizer([text for _, text, _ in ready], add_special_tokens=False, return_offsets_mapping=True)
            for k, (conv, _, spans) in enumerate(ready):
                try:
                    ids, target, truncated = encoder.finish(enc["input_ids"][k], enc["offset_mapping"][k], spans)
                except MalformedRecord as e:
                    reject(conv, e)
                    continue
                samples.append(EncodedSample(ids, target, conv.domain, truncated))
                stats.samples += 1
                stats.truncated += int(truncated)
                stats.tokens += len(ids)
                stats.target_tokens += int(target[1:].sum())
            bar.advance(task, len(chunk))
    if stats.truncated:
        log.warning("%d of %d SFT samples were truncated to %d positions", stats.truncated, stats.samples,
                    max_length)
    return samples, stats, quarantined


def save_samples(samples: list[EncodedSample], path) -> None:
    """Store encoded samples in one .npz (concatenated ids/targets + offsets), written atomically."""
    from infir.utils.io import atomic_path

    offsets = np.zeros(len(samples) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(s.ids) for s in samples])
    ids = np.concatenate([s.ids for s in samples]) if samples else np.zeros(0, np.int32)
    target = np.concatenate([s.target for s in samples]) if samples else np.zeros(0, bool)
    domains = np.asarray([s.domain for s in samples], dtype=object).astype(str)
    truncated = np.asarray([s.truncated for s in samples], dtype=bool)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, ids=ids, target=target, offsets=offsets, domains=domains, truncated=truncated)


def load_samples(path) -> list[EncodedSample]:
    with np.load(path, allow_pickle=False) as z:
        ids, target, offsets = z["ids"], z["target"], z["offsets"]
        domains, truncated = z["domains"], z["truncated"]
    return [EncodedSample(ids[a:b], target[a:b], str(domains[i]), bool(truncated[i]))
            for i, (a, b) in enumerate(zip(offsets[:-1], offsets[1:], strict=True))]
