"""Images -> SigLIP pixel tensors; LLaVA conversations -> token ids with image slots and labels; batches.

Preprocessing matches SigLIP's image processor: RGB, bicubic resize to the tower's size, scale to
[0, 1], normalise with mean = std = 0.5. Non-square images are either squashed (SigLIP's own
behaviour) or padded to a square first (LLaVA's `pad`), centred on a mid-grey background.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from infir.model import registry
from infir.model.chat_template import ChatLayout

IMAGE_PLACEHOLDER = "<image>"
ROLE_MAP = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
            "system": "system", "tool": "tool"}


def pad_to_square(image: Image.Image, fill: tuple[int, int, int] = (127, 127, 127)) -> tuple[Image.Image, tuple]:
    """Centre the image on a square canvas; returns (canvas, (offset_x, offset_y, side))."""
    w, h = image.size
    side = max(w, h)
    canvas = Image.new("RGB", (side, side), fill)
    ox, oy = (side - w) // 2, (side - h) // 2
    canvas.paste(image, (ox, oy))
    return canvas, (ox, oy, side)


def preprocess_image(image: Image.Image | str | Path, size: int, aspect: str = "pad",
                     mean: Sequence[float] = (0.5, 0.5, 0.5), std: Sequence[float] = (0.5, 0.5, 0.5)) -> torch.Tensor:
    """One image -> [3, size, size] float tensor, normalised like SigLIP."""
    if not isinstance(image, Image.Image):
        image = Image.open(image)
    image = image.convert("RGB")
    if aspect == "pad" and image.size[0] != image.size[1]:
        image, _ = pad_to_square(image, tuple(int(round(m * 255)) for m in mean))
    elif aspect not in ("pad", "squash"):
        raise ValueError(f"aspect must be 'pad' or 'squash', got {aspect!r}")
    image = image.resize((size, size), Image.Resampling.BICUBIC)
    arr = np.asarray(image, dtype=np.float32) / 255.0
    arr = (arr - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return torch.from_numpy(arr.transpose(2, 0, 1).copy())


def sample_images(sample: dict) -> list[str]:
    img = sample.get("image", sample.get("images"))
    if img is None:
        return []
    return [img] if isinstance(img, str) else list(img)


class ConversationEncoder:
    """Encodes LLaVA-style samples in the chat layout of the tokenizer's family (Llama 3, ChatML: the registry's);
    loss on assistant turns and their end-of-turn token (<|eot_id|>, <|im_end|>), never on headers, on the
    default system turn ChatML adds, or on the newline after <|im_end|>."""

    def __init__(self, tokenizer: Any, image_token_id: int, num_image_tokens: int, max_length: int = 4096,
                 layout: ChatLayout | None = None) -> None:
        self.tok = tokenizer
        self.image_token_id = image_token_id
        self.num_image_tokens = num_image_tokens
        self.max_length = max_length
        self.layout = layout or registry.chat_layout(tokenizer)
        self.begin_ids = self._text(self.layout.begin)
        self.after_ids = self._text(self.layout.after_turn)
        self.eot_id = tokenizer.convert_tokens_to_ids(self.layout.end_of_turn)

    def _text(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"] if text else []

    def _content(self, text: str) -> list[int]:
        ids: list[int] = []
        for i, piece in enumerate(text.split(IMAGE_PLACEHOLDER)):
            if i:
                ids += [self.image_token_id] * self.num_image_tokens
            ids += self._text(piece)
        return ids

    def encode(self, sample: dict, add_generation_prompt: bool = False) -> dict[str, list[int]]:
        """-> {"input_ids", "labels"} (labels[t] = the token after t, -100 where no loss).

        With `add_generation_prompt` the last assistant turn is dropped and its header ends the prompt.
        Raises ValueError on anything malformed (callers quarantine the sample).
        """
        messages = [dict(m) for m in sample["conversations"]]
        n_images = len(sample_images(sample))
        n_marks = sum(str(m.get("value", "")).count(IMAGE_PLACEHOLDER) for m in messages)
        if n_marks == 0 and n_images:
            first_user = next(i for i, m in enumerate(messages) if ROLE_MAP.get(m.get("from")) == "user")
            messages[first_user]["value"] = (IMAGE_PLACEHOLDER + "\n") * n_images + messages[first_user]["value"]
        elif n_marks != n_images:
            raise ValueError(f"{n_marks} {IMAGE_PLACEHOLDER} marks but {n_images} images")
        if add_generation_prompt and messages and ROLE_MAP.get(messages[-1].get("from")) == "assistant":
            messages = messages[:-1]
        for m in messages:
            if ROLE_MAP.get(m.get("from")) is None or not isinstance(m.get("value"), str):
                raise ValueError(f"bad turn {m!r}")
        turns = self.layout.turns([{"role": ROLE_MAP[m["from"]], "content": m["value"]} for m in messages])
        ids, trainable = list(self.begin_ids), [False] * len(self.begin_ids)
        for role, value in turns:
            head = self._text(self.layout.header(role))
            body = self._content(value) + [self.eot_id]
            ids += head + body + self.after_ids
            trainable += [False] * len(head) + [role == "assistant"] * len(body) + [False] * len(self.after_ids)
        if add_generation_prompt:
            ids += self._text(self.layout.header("assistant"))
            trainable += [False] * (len(ids) - len(trainable))
        if len(ids) > self.max_length:
            if self.image_token_id in ids[self.max_length:]:
                raise ValueError(f"{len(ids)} tokens > max_length {self.max_length} and truncation would cut an image")
            ids, trainable = ids[: self.max_length], trainable[: self.max_length]
        labels = [ids[t + 1] if trainable[t + 1] else -100 for t in range(len(ids) - 1)] + [-100]
        if not add_generation_prompt and all(x == -100 for x in labels):
            raise ValueError("no assistant tokens to learn from")
        return {"input_ids": ids, "labels": labels}


def collate(examples: list[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a training batch. Each example: input_ids, labels, pixel_values [n_i, 3, S, S] or None.

    Right padding with causal attention never lets real tokens see padding, so no mask is needed.
    """
    t = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), t), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), t), -100, dtype=torch.long)
    for i, e in enumerate(examples):
        ids[i, : len(e["input_ids"])] = torch.tensor(e["input_ids"])
        labels[i, : len(e["labels"])] = torch.tensor(e["labels"])
    pix = [e["pixel_values"] for e in examples if e.get("pixel_values") is not None and len(e["pixel_values"])]
    batch = {"input_ids": ids, "labels": labels}
    if pix:
        batch["pixel_values"] = torch.cat(pix, 0)
    return batch


def collate_prompts(prompts: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad prompts for generation: (input_ids, attention_mask)."""
    t = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), t), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), t), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, t - len(p):] = torch.tensor(p)
        mask[i, t - len(p):] = 1
    return ids, mask
