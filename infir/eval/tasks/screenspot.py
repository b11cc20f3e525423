"""ScreenSpot grounding metric: a click is right when it falls inside the target's bounding box.

Accuracy is reported per platform (mobile / desktop / web) x element type (text / icon), plus the
overall mean over samples. Predictions may be pixels, the [0,1000] convention (InfiR-VL's GUI data)
or [0,1] fractions; `parse_click` reads a point (or the centre of a box) from a model's reply.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

Convention = Literal["auto", "pixel", "1000", "unit"]
PLATFORMS = ("mobile", "desktop", "web")


def parse_click(text: str) -> tuple[float, float] | None:
    """The first point "(x, y)" / "[x, y]" / "x=.., y=.." in a reply; a 4-number box gives its centre."""
    nums = r"-?\d+(?:\.\d+)?"
    box = re.search(rf"[\[(]\s*({nums})\s*,\s*({nums})\s*,\s*({nums})\s*,\s*({nums})\s*[\])]", text)
    if box:
        x1, y1, x2, y2 = (float(v) for v in box.groups())
        return ((x1 + x2) / 2, (y1 + y2) / 2)
    pair = re.search(rf"[\[(]\s*({nums})\s*,\s*({nums})\s*[\])]", text) or re.search(
        rf"x\s*[=:]\s*({nums})\s*,?\s*y\s*[=:]\s*({nums})", text
    )
    if pair:
        return (float(pair.group(1)), float(pair.group(2)))
    loose = re.findall(nums, text)
    return (float(loose[0]), float(loose[1])) if len(loose) == 2 else None


def to_pixels(
    point: tuple[float, float], image_size: tuple[int, int], convention: Convention = "auto"
) -> tuple[float, float]:
    """A predicted point in pixels. "auto": both coordinates <= 1 means [0,1], else [0,1000]."""
    x, y = point
    width, height = image_size
    if convention == "auto":
        convention = "unit" if max(abs(x), abs(y)) <= 1.0 else "1000"
    if convention == "unit":
        return x * width, y * height
    if convention == "1000":
        return x / 1000 * width, y / 1000 * height
    return x, y


def point_in_box(point_px: tuple[float, float], bbox_xywh: Sequence[float]) -> bool:
    """ScreenSpot boxes are [left, top, width, height] in pixels; edges count as inside."""
    x, y = point_px
    left, top, w, h = bbox_xywh
    return left <= x <= left + w and top <= y <= top + h


def is_hit(
    prediction: str | tuple[float, float] | None,
    bbox_xywh: Sequence[float],
    image_size: tuple[int, int],
    convention: Convention = "auto",
) -> bool:
    point = parse_click(prediction) if isinstance(prediction, str) else prediction
    if point is None:
        return False
    return point_in_box(to_pixels(point, image_size, convention), bbox_xywh)


def screenspot_metrics(rows: Iterable[dict[str, Any]]) -> dict[str, float]:
    """rows: {"platform", "data_type", "correct"} -> accuracy per platform_type, per platform, overall."""
    groups: dict[str, list[bool]] = defaultdict(list)
    total: list[bool] = []
    for r in rows:
        platform, kind, ok = r["platform"], r["data_type"], bool(r["correct"])
        groups[f"{platform}_{kind}"].append(ok)
        groups[platform].append(ok)
        total.append(ok)
    out = {key: sum(v) / len(v) for key, v in sorted(groups.items())}
    out["accuracy"] = sum(total) / len(total) if total else 0.0
    out["n"] = float(len(total))
    return out


def load_annotations(data_dir: Path) -> list[dict[str, Any]]:
    """ScreenSpot records as {image, bbox [x,y,w,h], instruction, data_type, data_source, platform}.

    Reads `screenspot/uground_re_gpt-4o.jsonl` (all 1,272) or SeeClick's `screenspot_{platform}.json`.
    """
    folder = data_dir / "screenspot"
    keys = ("bbox", "instruction", "data_type", "data_source")
    full = folder / "uground_re_gpt-4o.jsonl"
    if full.exists():
        rows = [json.loads(line) for line in full.read_text(encoding="utf-8").splitlines() if line.strip()]
        return [{"image": r["image"], "platform": r["platform"], **{k: r[k] for k in keys}} for r in rows]
    out: list[dict[str, Any]] = []
    for platform in PLATFORMS:
        path = folder / f"screenspot_{platform}.json"
        if path.exists():
            for r in json.loads(path.read_text(encoding="utf-8")):
                out.append({"image": r["img_filename"], "platform": platform, **{k: r[k] for k in keys}})
    if not out:
        raise FileNotFoundError(
            f"no ScreenSpot annotations under {folder} (uground_re_gpt-4o.jsonl or "
            "screenspot_{mobile,desktop,web}.json)"
        )
    return out
