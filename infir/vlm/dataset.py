"""Samples -> encoded examples with pixel tensors; a bounded cache of preprocessed images."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np
import torch
from PIL import Image

from infir.utils.log import get_logger
from infir.vlm.processor import ConversationEncoder, pad_to_square, sample_images

log = get_logger(__name__)


class ImageCache:
    """Loads, squares and resizes images once; keeps up to `max_items` as uint8 (LRU); normalises on use."""

    def __init__(self, prep: dict[str, Any], max_items: int = 4096) -> None:
        self.size, self.aspect = int(prep["image_size"]), prep["aspect"]
        self.mean = torch.tensor(prep["mean"], dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(prep["std"], dtype=torch.float32).view(3, 1, 1)
        self.max_items = max_items
        self._items: OrderedDict[str, torch.Tensor] = OrderedDict()

    def _load(self, path: str) -> torch.Tensor:
        image = Image.open(path).convert("RGB")
        if self.aspect == "pad" and image.size[0] != image.size[1]:
            image, _ = pad_to_square(image, tuple(int(round(m * 255)) for m in self.mean.flatten().tolist()))
        image = image.resize((self.size, self.size), Image.Resampling.BICUBIC)
        return torch.from_numpy(np.asarray(image, dtype=np.uint8).transpose(2, 0, 1).copy())

    def get(self, path: str) -> torch.Tensor:
        """[3, S, S] float, normalised like SigLIP (same numbers as processor.preprocess_image)."""
        raw = self._items.get(path)
        if raw is None:
            raw = self._load(path)
            self._items[path] = raw
            if len(self._items) > self.max_items:
                self._items.popitem(last=False)
        else:
            self._items.move_to_end(path)
        return (raw.float() / 255.0 - self.mean) / self.std

    def stack(self, paths: list[str]) -> torch.Tensor | None:
        return torch.stack([self.get(p) for p in paths]) if paths else None


def encode_samples(samples: list[dict], encoder: ConversationEncoder) -> tuple[list[dict], list[dict]]:
    """Tokenize every sample once -> (examples with ids/labels/image paths, quarantined with reasons)."""
    examples, bad = [], []
    for s in samples:
        try:
            enc = encoder.encode(s)
        except (ValueError, KeyError, StopIteration) as e:
            bad.append({"id": s.get("id"), "reason": str(e) or type(e).__name__})
            continue
        examples.append({**enc, "images": sample_images(s), "id": s.get("id")})
    if bad:
        log.warning("%d samples could not be encoded (first: %s)", len(bad), bad[0]["reason"])
    return examples, bad
