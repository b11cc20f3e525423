"""LLaVA-style conversation data: `[{"id", "image": path | [paths] | absent, "conversations": [...]}]`.

Image paths are relative to `image_root` (default: the JSON file's folder). Malformed samples are
never dropped silently: each goes to a quarantine list with its reason, and the counts are logged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PIL import Image

from infir.utils.io import read_jsonl
from infir.utils.log import get_logger
from infir.vlm.processor import IMAGE_PLACEHOLDER, ROLE_MAP, sample_images

log = get_logger(__name__)


def check_sample(sample: Any, image_root: Path | None = None, open_images: bool = True) -> str | None:
    """The reason a sample is malformed, or None. Resolves image paths in place when image_root is given."""
    if not isinstance(sample, dict):
        return "not an object"
    conv = sample.get("conversations")
    if not isinstance(conv, list) or not conv:
        return "no conversations"
    for i, turn in enumerate(conv):
        if not isinstance(turn, dict) or ROLE_MAP.get(turn.get("from")) is None:
            return f"turn {i}: unknown speaker {turn.get('from') if isinstance(turn, dict) else turn!r}"
        if not isinstance(turn.get("value"), str):
            return f"turn {i}: value is not a string"
    if not any(ROLE_MAP[t["from"]] == "assistant" for t in conv):
        return "no assistant turn"
    try:
        images = sample_images(sample)
    except TypeError:
        return "image field is neither a path nor a list of paths"
    if not all(isinstance(p, str) and p for p in images):
        return "image field is neither a path nor a list of paths"
    marks = sum(t["value"].count(IMAGE_PLACEHOLDER) for t in conv)
    if marks and marks != len(images):
        return f"{marks} {IMAGE_PLACEHOLDER} marks but {len(images)} images"
    resolved = []
    for p in images:
        path = Path(p) if image_root is None or Path(p).is_absolute() else image_root / p
        if not path.is_file():
            return f"image not found: {path}"
        if open_images:
            try:
                with Image.open(path) as im:
                    im.verify()
            except Exception as e:  # noqa: BLE001 - PIL raises many types for broken files
                return f"unreadable image {path}: {type(e).__name__}"
        resolved.append(str(path))
    if images:
        sample["image"] = resolved if isinstance(sample.get("image", sample.get("images")), list) else resolved[0]
        sample.pop("images", None)
    return None


def load_llava(path: str | Path, image_root: str | Path | None = None) -> tuple[list[dict], list[dict]]:
    """Read a LLaVA JSON (list) or JSONL file -> (valid samples, quarantined [{"sample", "reason"}])."""
    path = Path(path)
    root = Path(image_root) if image_root is not None else path.parent
    if path.suffix in (".jsonl", ".gz", ".zst"):
        raw = list(read_jsonl(path))
    else:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(raw, list):
            raise ValueError(f"{path}: expected a JSON list of samples")
    good, bad = [], []
    for i, sample in enumerate(raw):
        reason = check_sample(sample, root)
        if reason is None:
            sample.setdefault("id", f"{path.stem}-{i}")
            sample.setdefault("kind", "llava")
            good.append(sample)
        else:
            bad.append({"index": i, "reason": reason, "sample": sample})
    log.info("%s: %d samples kept, %d quarantined", path, len(good), len(bad))
    return good, bad
