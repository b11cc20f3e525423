"""LLaVA-format samples from synthetic screens: captions, grounding, reference boxes, trajectories.

Every sample carries `meta` with what the evaluators need (element box in [0, 1000], platform,
text/icon, the reference action).
"""

from __future__ import annotations

import random
from pathlib import Path

from infir.vlm.data.gui_format import reasoning_block, ref, tool_call
from infir.vlm.data.screens import WORDS as BUTTON_WORDS
from infir.vlm.data.screens import Element, Screen, random_screen, save_screen

GROUNDING_PROMPTS = ("Click {phrase}.", "Tap {phrase}.", "Task: click {phrase}")
REFERRING_PROMPTS = ("What is at {point}?", "Which element is at point {point}?", "Name the element at {point}.")
CAPTION_PROMPTS = ("Describe the screen.", "What is on this screen?", "Write a short caption.")
APPS = ("Mail", "Notes", "Maps", "Music", "Camera")
TYPED = ("hello", "meet at 5", "ok", "buy milk", "see you")


def grounding_prompt(element: Element, rng: random.Random) -> str:
    return rng.choice(GROUNDING_PROMPTS).format(phrase=element.phrase)


def make_screens(n: int, image_dir: Path, seed: int, prefix: str, **layout) -> list[tuple[Screen, str]]:
    """Render n screens to PNGs; returns (screen, path) pairs. The PIL images are dropped after saving."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        screen = random_screen(rng, **layout)
        path = save_screen(screen, image_dir / f"{prefix}-{i:06d}.png")
        screen.image = None
        out.append((screen, path))
    return out


def _meta(screen: Screen, element: Element | None = None, action: dict | None = None) -> dict:
    meta = {"platform": screen.platform, "width": screen.width, "height": screen.height}
    if element is not None:
        meta.update(bbox=element.box, data_type=element.kind, target=element.label)
    if action is not None:
        meta["action"] = action
    return meta


def caption_sample(screen: Screen, path: str, rng: random.Random, sid: str) -> dict:
    return {"id": sid, "image": path, "kind": "caption", "meta": _meta(screen),
            "conversations": [{"from": "human", "value": "<image>\n" + rng.choice(CAPTION_PROMPTS)},
                              {"from": "gpt", "value": screen.caption()}]}


def grounding_sample(screen: Screen, path: str, element: Element, rng: random.Random, sid: str,
                     as_ref: bool = False) -> dict:
    """Either a click tool call on the element's centre, or a reference-augmented box answer."""
    if as_ref:
        q = f"Where is {element.phrase}?"
        a = ref(element.label, element.box, "box")
    else:
        q = grounding_prompt(element, rng)
        a = tool_call("click", point=element.point)
    return {"id": sid, "image": path, "kind": "grounding", "meta": _meta(screen, element),
            "conversations": [{"from": "human", "value": f"{q}\n<image>"}, {"from": "gpt", "value": a}]}


def referring_samples(screens: list[tuple[Screen, str]], rng: random.Random, prefix: str) -> list[dict]:
    """Referring, the inverse of grounding: a point in [0, 1000] asks for the element there, answered as a
    reference-augmented point (`<ref type="point" coords=[x, y]>red circle</ref>`). One per element."""
    out = []
    for n, (screen, path) in enumerate(screens):
        for j, el in enumerate(screen.elements):
            q = rng.choice(REFERRING_PROMPTS).format(point=f"[{el.point[0]}, {el.point[1]}]")
            name = el.label if el.kind == "icon" else f'"{el.label}" button'
            out.append({"id": f"{prefix}-{n:06d}-{j}", "image": path, "kind": "referring",
                        "meta": _meta(screen, el),
                        "conversations": [{"from": "human", "value": f"{q}\n<image>"},
                                          {"from": "gpt", "value": ref(name, el.point, "point")}]})
    return out


def grounding_eval_records(screens: list[tuple[Screen, str]], rng: random.Random) -> list[dict]:
    """ScreenSpot-style records: one instruction per element, bbox normalised [0, 1000] x1, y1, x2, y2."""
    return [{"image": path, "instruction": grounding_prompt(e, rng), "bbox": e.box, "data_type": e.kind,
             "platform": s.platform, "n_elements": len(s.elements)} for s, path in screens for e in s.elements]


def _step(screen: Screen, path: str, goal: str, history: list[str], answer: str, action: dict,
          element: Element | None, sid: str, prev_path: str | None) -> dict:
    done = "; ".join(history) if history else "none"
    if prev_path is not None:
        images, shots = [prev_path, path], "\nPrevious screen: <image>\nCurrent screen: <image>"
    else:
        images, shots = [path], "\n<image>"
    return {"id": sid, "image": images, "kind": "trajectory", "meta": _meta(screen, element, action),
            "conversations": [{"from": "human", "value": f"Goal: {goal}\nPrevious actions: {done}{shots}"},
                              {"from": "gpt", "value": answer}]}


def trajectory_samples(screens: list[tuple[Screen, str]], rng: random.Random, prefix: str) -> list[dict]:
    """Short synthetic episodes (2-4 steps) as one sample per step, with reasoning fields and actions.

    Episodes: press a button then type and confirm; scroll to find an element then press it;
    open an app, wait, go back/home, long-press an icon; each ends with `terminate`.
    """
    samples: list[dict] = []
    for n, (screen, path) in enumerate(screens):
        nxt, nxt_path = screens[(n + 1) % len(screens)]
        target = rng.choice(screen.elements)
        kind = rng.choice(("type", "scroll", "app", "press"))
        steps: list[tuple[Screen, str, str, dict, Element | None, str]] = []  # screen, path, why, action, el, next
        if kind == "type":
            text = rng.choice(TYPED)
            goal = f'Write "{text}" using {target.phrase}'
            steps.append((screen, path, f"I should open {target.phrase} first",
                          {"name": "click", "arguments": {"point": target.point}}, target,
                          "a text field opens"))
            steps.append((nxt, nxt_path, "The text field is open", {"name": "type", "arguments": {"text": text}},
                          None, "the text is entered"))
        elif kind == "scroll":
            goal_el = rng.choice(nxt.elements)
            direction = rng.choice(("up", "down"))
            goal = f"Find and press {goal_el.phrase}"
            steps.append((screen, path, f"{goal_el.phrase} is not visible; scroll {direction}",
                          {"name": "swipe", "arguments": {"direction": direction}}, None, "more items appear"))
            steps.append((nxt, nxt_path, f"{goal_el.phrase} is visible now",
                          {"name": "click", "arguments": {"point": goal_el.point}}, goal_el,
                          "the item is pressed"))
        elif kind == "app":
            app = rng.choice(APPS)
            goal = f"Open {app} and return home"
            steps.append((screen, path, f"I need the {app} app", {"name": "open", "arguments": {"app": app}},
                          None, f"{app} starts"))
            steps.append((nxt, nxt_path, f"{app} is loading", {"name": "wait", "arguments": {}}, None,
                          f"{app} is ready"))
            steps.append((nxt, nxt_path, f"{app} is open", {"name": rng.choice(("home", "back")), "arguments": {}},
                          None, "the home screen shows"))
        else:
            goal = f"Show the options of {target.phrase}"
            steps.append((screen, path, f"A long press on {target.phrase} shows its options",
                          {"name": "long_press", "arguments": {"point": target.point}}, target,
                          "a menu opens"))
        steps.append((steps[-1][0], steps[-1][1], "The goal is reached",
                      {"name": "terminate", "arguments": {"status": "success"}}, None, "the task ends"))
        history: list[str] = []
        prev: str | None = None
        for i, (scr, pth, why, action, el, expect) in enumerate(steps):
            reflection = "This is the first step" if not history else f"The last action was {history[-1]}"
            answer = reasoning_block(reflection, why, expect) + tool_call(action["name"], **action["arguments"])
            multi = prev is not None and prev != pth and rng.random() < 0.3
            samples.append(_step(scr, pth, goal, history, answer, action, el, f"{prefix}-{n:06d}-{i}",
                                 prev if multi else None))
            history.append(action["name"])
            prev = pth
    return samples


def gui_sample_pool(screens: list[tuple[Screen, str]], rng: random.Random, prefix: str) -> dict[str, list[dict]]:
    """Caption, grounding (70% click, 30% ref box) and trajectory samples from the same screens."""
    pool: dict[str, list[dict]] = {"caption": [], "grounding": [], "trajectory": []}
    for n, (screen, path) in enumerate(screens):
        pool["caption"].append(caption_sample(screen, path, rng, f"{prefix}-cap-{n:06d}"))
        for j, el in enumerate(screen.elements):
            pool["grounding"].append(grounding_sample(screen, path, el, rng, f"{prefix}-gnd-{n:06d}-{j}",
                                                      as_ref=rng.random() < 0.3))
    pool["trajectory"] = trajectory_samples(screens, rng, f"{prefix}-traj")
    return pool


__all__ = ["BUTTON_WORDS", "gui_sample_pool", "grounding_eval_records", "make_screens", "referring_samples",
           "trajectory_samples"]
