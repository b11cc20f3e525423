"""GUI annotation formats (InfiGUIAgent style, paper §4.2.3).

- Coordinates are integers on a [0, 1000] scale relative to the screenshot's width and height.
- Reference-augmented text: `<ref type="box" coords=[x1, y1, x2, y2]>Save</ref>` (a point:
  `<ref type="point" coords=[x, y]>Save</ref>`).
- Actions: `<tool_call>{"name": "click", "arguments": {"point": [x, y]}}</tool_call>`.
- Reasoning fields before the action: Reflection / Plan / Expectation lines.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

SCALE = 1000
ACTIONS = ("click", "long_press", "swipe", "type", "back", "home", "open", "wait", "terminate")
SWIPE_DIRECTIONS = ("up", "down", "left", "right")
_TOOL_CALL = re.compile(r"<tool_call>\s*(\{.*?\})\s*</tool_call>", re.S)
_POINT = re.compile(r"(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)")


def normalize_point(x: float, y: float, width: float, height: float) -> list[int]:
    """Pixel point -> [0, 1000] integers (clamped)."""
    return [min(SCALE, max(0, round(x / width * SCALE))), min(SCALE, max(0, round(y / height * SCALE)))]


def normalize_box(box: Sequence[float], width: float, height: float, xywh: bool = False) -> list[int]:
    """Pixel box (x1, y1, x2, y2), or (x, y, w, h) with xywh=True -> [0, 1000] x1, y1, x2, y2."""
    x1, y1, a, b = box
    x2, y2 = (x1 + a, y1 + b) if xywh else (a, b)
    return normalize_point(x1, y1, width, height) + normalize_point(x2, y2, width, height)


def point_in_box(point: Sequence[float], box: Sequence[float]) -> bool:
    return box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3]


def ref(text: str, coords: Sequence[int], kind: str = "box") -> str:
    if kind not in ("box", "point"):
        raise ValueError(f"ref type must be box or point, got {kind!r}")
    return f'<ref type="{kind}" coords=[{", ".join(str(int(c)) for c in coords)}]>{text}</ref>'


_REF = re.compile(r'<ref type="(box|point)" coords=\[([^\]]*)\]>(.*?)</ref>', re.S)


def parse_refs(text: str) -> list[dict[str, Any]]:
    out = []
    for kind, coords, label in _REF.findall(text):
        out.append({"type": kind, "coords": [int(float(c)) for c in coords.split(",") if c.strip()], "text": label})
    return out


def tool_call(name: str, **arguments: Any) -> str:
    """One action as a <tool_call> block; the argument set is checked against the action space."""
    if name not in ACTIONS:
        raise ValueError(f"unknown action {name!r}; expected one of {ACTIONS}")
    if name in ("click", "long_press") and "point" not in arguments:
        raise ValueError(f"{name} needs a point")
    if name == "swipe" and arguments.get("direction") not in SWIPE_DIRECTIONS:
        raise ValueError(f"swipe needs a direction in {SWIPE_DIRECTIONS}")
    if name == "type" and not isinstance(arguments.get("text"), str):
        raise ValueError("type needs a text")
    if name == "open" and not isinstance(arguments.get("app"), str):
        raise ValueError("open needs an app")
    return "<tool_call>" + json.dumps({"name": name, "arguments": arguments}) + "</tool_call>"


def parse_tool_call(text: str) -> dict[str, Any] | None:
    """The first well-formed tool call in a completion, else None."""
    for block in _TOOL_CALL.findall(text):
        try:
            call = json.loads(block)
        except json.JSONDecodeError:
            continue
        if isinstance(call, dict) and isinstance(call.get("name"), str):
            args = call.get("arguments")
            return {"name": call["name"], "arguments": args if isinstance(args, dict) else {}}
    return None


def extract_point(text: str) -> list[float] | None:
    """A click point from a completion: the tool call's point, else the first "x, y" pair in the text."""
    call = parse_tool_call(text)
    if call is not None:
        p = call["arguments"].get("point") or call["arguments"].get("coordinate")
        if isinstance(p, (list, tuple)) and len(p) == 2 and all(isinstance(v, (int, float)) for v in p):
            return [float(p[0]), float(p[1])]
    m = _POINT.search(text)
    return [float(m.group(1)), float(m.group(2))] if m else None


def reasoning_block(reflection: str, plan: str, expectation: str) -> str:
    return f"Reflection: {reflection}\nPlan: {plan}\nExpectation: {expectation}\n"
