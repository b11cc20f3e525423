"""LLaVA loading with quarantine, similarity cleaning with a real (tiny, random) CLIP, text rendering."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from PIL import Image

from infir.vlm.data.clean import DualEncoder, clean_pairs, plot_histogram, similarity_report
from infir.vlm.data.fonts import font_files, load_font
from infir.vlm.data.llava import load_llava
from infir.vlm.data.render import render_text, synthetic_texts, text_rendering_samples


def _image(path, color):
    Image.new("RGB", (40, 30), color).save(path)
    return path.name


def test_load_llava_quarantines_malformed_samples(tmp_path):
    a = _image(tmp_path / "a.png", (255, 0, 0))
    b = _image(tmp_path / "b.png", (0, 255, 0))
    (tmp_path / "broken.png").write_bytes(b"not a png")
    turn = lambda who, v: {"from": who, "value": v}  # noqa: E731
    samples = [
        {"id": "ok1", "image": a, "conversations": [turn("human", "<image>\nWhat?"), turn("gpt", "Red.")]},
        {"id": "ok2", "image": [a, b], "conversations": [turn("human", "<image><image>Diff?"), turn("gpt", "Colour")]},
        {"id": "text", "conversations": [turn("human", "Hi"), turn("gpt", "Hello")]},
        {"id": "nofile", "image": "missing.png", "conversations": [turn("human", "x"), turn("gpt", "y")]},
        {"id": "broken", "image": "broken.png", "conversations": [turn("human", "x"), turn("gpt", "y")]},
        {"id": "marks", "image": a, "conversations": [turn("human", "<image><image>"), turn("gpt", "y")]},
        {"id": "speaker", "conversations": [turn("robot", "x"), turn("gpt", "y")]},
        {"id": "noanswer", "conversations": [turn("human", "x")]},
        "not even an object",
    ]
    path = tmp_path / "data.json"
    path.write_text(json.dumps(samples))
    good, bad = load_llava(path)
    assert [s["id"] for s in good] == ["ok1", "ok2", "text"]
    assert good[0]["image"] == str(tmp_path / a) and good[1]["image"] == [str(tmp_path / a), str(tmp_path / b)]
    reasons = {b["index"]: b["reason"] for b in bad}
    assert len(good) + len(bad) == len(samples)  # nothing lost
    assert "image not found" in reasons[3] and "unreadable image" in reasons[4]
    assert "2 <image> marks but 1 images" in reasons[5] and "unknown speaker" in reasons[6]
    assert reasons[7] == "no assistant turn" and reasons[8] == "not an object"


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """A real CLIP architecture with random weights, saved the way a local encoder folder is."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    from infir.model.tokenizer import train_bpe_tokenizer

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("clip")
    tok = train_bpe_tokenizer(["a red square", "a green circle", "a photo of a cat"] * 20, vocab_size=300)
    cfg = CLIPConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=32),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=16,
    )
    CLIPModel(cfg).save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_similarity_cleaning_with_a_local_dual_encoder(tmp_path, tiny_clip):
    encoder = DualEncoder(tiny_clip)
    colours = [(255, 0, 0), (0, 200, 0), (0, 0, 255), (200, 200, 0)] * 3
    samples = []
    for i, c in enumerate(colours):
        path = tmp_path / f"{i}.png"
        Image.new("RGB", (48, 48), c).save(path)
        samples.append({"id": str(i), "image": str(path), "conversations": [
            {"from": "human", "value": "<image>\nDescribe."}, {"from": "gpt", "value": f"a photo number {i}"}]})
    samples.append({"id": "text-only", "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]})
    # Reference similarities computed straight from the model, pair by pair.
    ref = np.array([encoder.similarity([Image.open(s["image"]).convert("RGB")], [s["conversations"][1]["value"]])[0]
                    for s in samples[:-1]])
    threshold = float(np.median(ref))
    kept, dropped, report = clean_pairs(samples, encoder, threshold=threshold, batch_size=5, bins=10)
    assert {s["id"] for s in kept} == {"text-only"} | {str(i) for i in range(len(ref)) if ref[i] >= threshold}
    assert len(kept) + len(dropped) == len(samples)
    assert all(d["similarity"] < threshold and "similarity" in d["reason"] for d in dropped)
    np.testing.assert_allclose(sorted(s["meta"]["similarity"] for s in kept if "meta" in s),
                               sorted(ref[ref >= threshold]), atol=1e-5)
    assert report["scored"] == len(ref) and sum(report["histogram"]["counts"]) == len(ref)
    assert report["below_threshold"] == len(dropped) and report["passthrough"] == 1
    assert plot_histogram(report, tmp_path / "hist.png").stat().st_size > 0


def test_similarity_report_default_threshold():
    sims = np.array([0.1, 0.45, 0.5, 0.7, 0.9])
    r = similarity_report(sims, 0.5, bins=4)
    assert r["below_threshold"] == 2 and r["fraction_below"] == pytest.approx(0.4)
    assert r["histogram"]["counts"] == [0, 0, 2, 3] and r["histogram"]["edges"][0] == -1.0


def test_text_rendering_varies_and_writes_ocr_samples(tmp_path):
    assert font_files(), "DejaVu (system or matplotlib) fonts are expected offline"
    assert load_font(12).getbbox("Hello")[2] > 0
    rng = random.Random(0)
    texts = synthetic_texts(rng, 30)
    assert {g for g, _ in texts} == {"document", "code", "math"}
    a = np.asarray(render_text("def f(x):", random.Random(1)))
    b = np.asarray(render_text("def f(x):", random.Random(2)))
    assert a.shape == b.shape == (96, 256, 3) and not np.array_equal(a, b)
    assert a.std() > 5  # text was drawn, not a blank page
    samples = text_rendering_samples(random.Random(0), 10, tmp_path / "img")
    assert len(samples) == 10 and all(Image.open(s["image"]).size == (256, 96) for s in samples)
    for s in samples:
        q, a_ = s["conversations"][0]["value"], s["conversations"][1]["value"]
        assert q.startswith("<image>\n") and a_
