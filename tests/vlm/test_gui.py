"""GUI formats, synthetic screens, trajectories and the grounding / step-accuracy scorers."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from PIL import Image

from infir.vlm.data.gui_format import (
    extract_point,
    normalize_box,
    parse_refs,
    parse_tool_call,
    point_in_box,
    ref,
    tool_call,
)
from infir.vlm.data.gui_samples import gui_sample_pool, make_screens
from infir.vlm.data.screens import PALETTES, random_screen
from infir.vlm.evaluate import action_matches, load_screenspot, score_grounding, score_steps


def test_coordinates_ref_and_tool_call_round_trip():
    assert normalize_box([100, 50, 300, 150], 400, 200) == [250, 250, 750, 750]
    assert normalize_box([100, 50, 100, 50], 400, 200, xywh=True) == [250, 250, 500, 500]
    assert normalize_box([-5, 0, 999, 10], 400, 200) == [0, 0, 1000, 50]  # clamped
    text = "Tap " + ref("Save", [10, 20, 30, 40]) + " then " + ref("OK", [5, 6], kind="point")
    assert parse_refs(text) == [{"type": "box", "coords": [10, 20, 30, 40], "text": "Save"},
                                {"type": "point", "coords": [5, 6], "text": "OK"}]
    call = tool_call("click", point=[500, 250])
    assert call == '<tool_call>{"name": "click", "arguments": {"point": [500, 250]}}</tool_call>'
    assert parse_tool_call("Plan: x\n" + call) == {"name": "click", "arguments": {"point": [500, 250]}}
    assert extract_point(call) == [500.0, 250.0]
    assert extract_point("I would click (12, 34).") == [12.0, 34.0]
    assert parse_tool_call("<tool_call>{broken</tool_call>") is None
    for bad in [("tap", {}), ("click", {}), ("swipe", {"direction": "sideways"}), ("type", {}), ("open", {})]:
        with pytest.raises(ValueError):
            tool_call(bad[0], **bad[1])


def test_synthetic_screens_draw_elements_inside_their_boxes():
    rng = random.Random(3)
    for _ in range(20):
        screen = random_screen(rng, grid=4, render_width=128)
        arr = np.asarray(screen.image).astype(int)
        labels = [e.label for e in screen.elements]
        assert len(labels) == len(set(labels)), "labels must be unique on a screen"
        for e in screen.elements:
            x1, y1, x2, y2 = e.box_px
            assert 0 <= x1 < x2 <= screen.width and 0 <= y1 < y2 <= screen.height
            # The element is really drawn there: its box differs from the plain background.
            patch = arr[y1:y2, x1:x2]
            assert not any(np.all(patch == np.array(p)) for p in PALETTES[screen.platform])
            # The normalised box holds the centre of the element's grid cell.
            cx, cy = (e.box[0] + e.box[2]) / 2, (e.box[1] + e.box[3]) / 2
            cell_x, cell_y = int(cx // 250), int(cy // 250)
            assert point_in_box(((cell_x + 0.5) * 250, (cell_y + 0.5) * 250), e.box)


def test_sample_pool_has_every_action_and_reasoning(tmp_path):
    screens = make_screens(40, tmp_path / "img", seed=1, prefix="s", grid=4, render_width=96)
    pool = gui_sample_pool(screens, random.Random(0), "t")
    assert len(pool["caption"]) == 40 and len(pool["grounding"]) == sum(len(s.elements) for s, _ in screens)
    names = {s["meta"]["action"]["name"] for s in pool["trajectory"]}
    assert names >= {"click", "type", "swipe", "open", "wait", "terminate", "long_press"}
    assert names & {"back", "home"}
    for s in pool["trajectory"]:
        answer = s["conversations"][-1]["value"]
        assert answer.startswith("Reflection: ") and "\nPlan: " in answer and "\nExpectation: " in answer
        call = parse_tool_call(answer)
        assert call == {"name": s["meta"]["action"]["name"], "arguments": s["meta"]["action"]["arguments"]}
        images = s["image"]
        assert s["conversations"][0]["value"].count("<image>") == len(images)
        if call["name"] in ("click", "long_press"):
            assert point_in_box(call["arguments"]["point"], s["meta"]["bbox"])
    assert any(len(s["image"]) == 2 for s in pool["trajectory"]), "some steps show the previous screen too"
    refs = [s for s in pool["grounding"] if "<ref" in s["conversations"][-1]["value"]]
    assert refs and all(parse_refs(s["conversations"][-1]["value"])[0]["coords"] == s["meta"]["bbox"] for s in refs)


def test_score_grounding_and_chance():
    records = [{"bbox": [0, 0, 500, 500], "platform": "web", "data_type": "icon", "n_elements": 4},
               {"bbox": [500, 500, 1000, 1000], "platform": "mobile", "data_type": "text", "n_elements": 2}]
    completions = [tool_call("click", point=[250, 250]), "no idea"]
    m = score_grounding(records, completions)
    assert m["accuracy"] == 0.5 and m["parsed"] == 0.5
    assert m["chance_random_click"] == pytest.approx(0.25)
    assert m["chance_random_element"] == pytest.approx((1 / 4 + 1 / 2) / 2)
    assert m["by_group"]["web_icon"] == 1.0 and m["by_group"]["mobile_text"] == 0.0


def test_step_accuracy_rules():
    box = [100, 100, 200, 200]
    click = {"name": "click", "arguments": {"point": [150, 150]}}
    assert action_matches({"name": "click", "arguments": {"point": [199, 101]}}, click, box)
    assert not action_matches({"name": "click", "arguments": {"point": [250, 150]}}, click, box)
    assert not action_matches({"name": "long_press", "arguments": {"point": [150, 150]}}, click, box)
    swipe = {"name": "swipe", "arguments": {"direction": "up"}}
    assert action_matches({"name": "swipe", "arguments": {"direction": "up"}}, swipe, None)
    assert not action_matches({"name": "swipe", "arguments": {"direction": "down"}}, swipe, None)
    typed = {"name": "type", "arguments": {"text": "Meet at 5"}}
    assert action_matches({"name": "type", "arguments": {"text": "meet  at 5"}}, typed, None)
    assert not action_matches({"name": "type", "arguments": {"text": "meet at 6"}}, typed, None)
    samples = [{"meta": {"action": click, "bbox": box}}, {"meta": {"action": swipe}}]
    m = score_steps(samples, [tool_call("click", point=[120, 180]), tool_call("swipe", direction="left")])
    assert m["type_accuracy"] == 1.0 and m["step_accuracy"] == 0.5


def test_real_screenspot_annotations(shared_data):
    folder = shared_data / "screenspot" / "images"
    records = load_screenspot(folder)
    assert len(records) == 8
    raw = [json.loads(line) for line in (folder / "annotations.jsonl").read_text().splitlines()]
    for r, a in zip(records, raw, strict=True):
        w, h = Image.open(folder / a["img_filename"]).size
        x, y, bw, bh = a["bbox"]
        assert r["bbox"] == normalize_box([x, y, x + bw, y + bh], w, h)
    # An oracle clicking each box centre scores 1.0; clicking the screen centre scores what it hits.
    oracle = [tool_call("click", point=[(r["bbox"][0] + r["bbox"][2]) // 2, (r["bbox"][1] + r["bbox"][3]) // 2])
              for r in records]
    assert score_grounding(records, oracle)["accuracy"] == 1.0
    centre = score_grounding(records, [tool_call("click", point=[500, 500])] * len(records))
    assert centre["accuracy"] < 0.5
    assert set(centre["by_group"]) == {"mobile", "web", "mobile_icon", "mobile_text", "web_icon", "web_text"}


def test_paper_scale_screens_with_more_elements_than_colours_and_words():
    """Regression: recipes/infir-vl.yaml (8 x 8 grid, up to 16 elements) crashed once words and colours ran out."""
    rng = random.Random(0)
    for _ in range(30):
        screen = random_screen(rng, grid=8, min_elements=16, max_elements=16, render_width=256)
        labels = [e.label for e in screen.elements]
        assert len(labels) == 16 and len(set(labels)) == 16
    with pytest.raises(ValueError, match="at most"):
        random_screen(rng, grid=8, min_elements=40, max_elements=40)


def test_single_element_pool_for_curricula(tmp_path):
    from infir.vlm.config import VLMConfig
    from infir.vlm.pipeline import build_data

    stages = [{"name": "s3", "data": {"grounding": 0.5, "grounding_single": 0.3, "referring": 0.2}}]
    cfg = VLMConfig.model_validate({"synth": {"train_screens": 4, "ocr_images": 2, "eval_screens": 2,
                                              "render_width": 96, "single_element_screens": 5}, "stages": stages})
    summary = build_data(cfg, tmp_path / "data")
    assert summary["counts"]["grounding_single"] == 5
    single = json.loads((tmp_path / "data" / "grounding_single.json").read_text())
    assert len({s["image"] for s in single}) == 5  # one element, so one sample per screen
    # referring (point in, name out): one sample per element of the training screens
    grounding = json.loads((tmp_path / "data" / "grounding.json").read_text())
    referring = json.loads((tmp_path / "data" / "referring.json").read_text())
    assert summary["counts"]["referring"] == len(grounding) == len(referring)
    for s in referring:
        (answer,) = parse_refs(s["conversations"][1]["value"])
        assert answer["type"] == "point" and point_in_box(answer["coords"], s["meta"]["bbox"])
        assert str(answer["coords"]) in s["conversations"][0]["value"]
        assert s["meta"]["target"] in answer["text"]
