"""Grounding (ScreenSpot protocol) and AndroidControl-style step accuracy for a VLM.

ScreenSpot: a prediction is right when its click point falls inside the target box; accuracy is
reported overall and per platform x text/icon. Boxes here are [0, 1000]-normalised x1, y1, x2, y2
(the real ScreenSpot's pixel [x, y, w, h] boxes are converted by `load_screenspot`).
Chance levels are reported beside accuracy: a uniformly random click (mean box area) and, for
synthetic screens, picking a random element.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from PIL import Image

from infir.eval.tasks.screenspot import is_hit, screenspot_metrics
from infir.vlm.data.gui_format import SCALE, extract_point, normalize_box, parse_tool_call, point_in_box


def load_screenspot(folder: str | Path, annotations: str = "annotations.jsonl") -> list[dict]:
    """Real ScreenSpot records (SeeClick / UGround fields) whose screenshots are present in `folder`."""
    folder = Path(folder)
    records = []
    for line in (folder / annotations).read_text().splitlines():
        if not line.strip():
            continue
        r = json.loads(line)
        image = folder / (r.get("img_filename") or r["image"])
        if not image.is_file():
            continue
        with Image.open(image) as im:
            w, h = im.size
        records.append({"image": str(image), "instruction": r["instruction"],
                        "bbox": normalize_box(r["bbox"], w, h, xywh=True),
                        "data_type": r["data_type"], "platform": r.get("platform", r.get("data_source", "?"))})
    return records


def grounding_prompt_sample(record: dict) -> dict:
    """The instruction comes before the screenshot, so image tokens can attend to what is asked."""
    return {"image": record["image"], "conversations": [{"from": "human", "value": f"{record['instruction']}\n<image>"}]}


def score_grounding(records: list[dict], completions: list[str]) -> dict[str, Any]:
    """Point-in-box accuracy (the eval room's ScreenSpot metric: overall, per platform, per
    platform_type), with the parse rate and the chance levels beside it."""
    rows, parsed, chance = [], 0, 0.0
    for r, text in zip(records, completions, strict=True):
        point = extract_point(text)
        parsed += point is not None
        x1, y1, x2, y2 = r["bbox"]
        # Boxes are in [0, 1000] space: one "pixel" per unit on a 1000 x 1000 screen.
        hit = point is not None and is_hit(tuple(point), [x1, y1, x2 - x1, y2 - y1], (SCALE, SCALE), "pixel")
        rows.append({"platform": r["platform"], "data_type": r["data_type"], "correct": hit})
        chance += max(0, x2 - x1) * max(0, y2 - y1) / SCALE**2
    n = len(records)
    metrics = screenspot_metrics(rows)
    out = {"n": n, "accuracy": metrics.pop("accuracy"), "parsed": parsed / n if n else 0.0,
           "chance_random_click": chance / n if n else 0.0,
           "by_group": {k: v for k, v in metrics.items() if k != "n"}}
    if records and all("n_elements" in r for r in records):
        out["chance_random_element"] = sum(1 / r["n_elements"] for r in records) / n
    return out


def action_matches(pred: dict[str, Any] | None, ref: dict[str, Any], bbox: list[int] | None) -> bool:
    """AndroidControl-style: action type must match; clicks inside the element box; swipe direction;
    typed text (case- and space-insensitive); app name for open."""
    if pred is None or pred.get("name") != ref["name"]:
        return False
    args, want = pred.get("arguments", {}), ref.get("arguments", {})
    name = ref["name"]
    if name in ("click", "long_press"):
        point = args.get("point")
        if not (isinstance(point, (list, tuple)) and len(point) == 2 and all(isinstance(v, (int, float)) for v in point)):
            return False
        return point_in_box(point, bbox) if bbox is not None else list(point) == list(want.get("point"))
    if name == "swipe":
        return args.get("direction") == want.get("direction")
    if name in ("type", "open"):
        key = "text" if name == "type" else "app"
        norm = lambda v: " ".join(str(v).lower().split())  # noqa: E731
        return norm(args.get(key, "")) == norm(want.get(key, ""))
    return True


def score_steps(samples: list[dict], completions: list[str]) -> dict[str, Any]:
    """Step accuracy (full match) and type accuracy over trajectory steps, overall and per action."""
    per: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for s, text in zip(samples, completions, strict=True):
        ref = s["meta"]["action"]
        pred = parse_tool_call(text)
        type_ok = int(pred is not None and pred["name"] == ref["name"])
        per[ref["name"]].append((type_ok, int(action_matches(pred, ref, s["meta"].get("bbox")))))
    flat = [x for v in per.values() for x in v]
    n = len(flat)
    return {"n": n, "type_accuracy": sum(t for t, _ in flat) / n if n else 0.0,
            "step_accuracy": sum(m for _, m in flat) / n if n else 0.0,
            "by_action": {k: {"n": len(v), "step_accuracy": sum(m for _, m in v) / len(v)} for k, v in sorted(per.items())}}
