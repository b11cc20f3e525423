"""The VLM: feature splicing, mixed batches, preprocessing like SigLIP, save/load, batched generation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from infir.vlm.dataset import ImageCache
from infir.vlm.generate import generate
from infir.vlm.model import SO400M, load_vlm, save_vlm
from infir.vlm.processor import ConversationEncoder, collate, preprocess_image

from .conftest import IMAGE_TOKEN


def _turns(q, a=None):
    conv = [{"from": "human", "value": q}]
    return conv + ([{"from": "gpt", "value": a}] if a is not None else [])


@pytest.fixture()
def images(tmp_path):
    paths = []
    for i, (size, color) in enumerate([((40, 20), (255, 0, 0)), ((32, 32), (0, 0, 255)), ((20, 50), (0, 200, 0))]):
        im = Image.new("RGB", size, color)
        im.putpixel((3, 3), (255, 255, 255))
        paths.append(str(tmp_path / f"{i}.png"))
        im.save(paths[-1])
    return paths


def test_so400m_geometry_gives_729_tokens():
    assert (SO400M["image_size"] // SO400M["patch_size"]) ** 2 == 729


def test_encoder_expands_images_and_masks_the_prompt(tiny_vlm, tiny_tokenizer):
    enc = ConversationEncoder(tiny_tokenizer, tiny_vlm.image_token_id, tiny_vlm.num_image_tokens)
    assert tiny_vlm.num_image_tokens == 16
    out = enc.encode({"image": ["a", "b"], "conversations": _turns("<image> and <image>: same?", "No.")})
    ids, labels = out["input_ids"], out["labels"]
    assert ids.count(tiny_vlm.image_token_id) == 32 and len(ids) == len(labels)
    learned = [t for t in labels if t != -100]
    assert tiny_tokenizer.decode(learned) == "No.<|eot_id|>"
    # No <image> mark: one is put in front of the first user turn.
    auto = enc.encode({"image": "a", "conversations": _turns("What?", "A.")})["input_ids"]
    assert auto.count(tiny_vlm.image_token_id) == 16
    prompt = enc.encode({"image": "a", "conversations": _turns("What?", "A.")}, add_generation_prompt=True)
    assert tiny_tokenizer.decode(prompt["input_ids"]).endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    with pytest.raises(ValueError, match="marks but"):
        enc.encode({"image": ["a"], "conversations": _turns("<image><image>", "x")})


def test_preprocessing_matches_siglip_image_processor(images):
    from transformers import SiglipImageProcessor

    image = Image.open(images[0]).convert("RGB")
    ours = preprocess_image(image, 32, aspect="squash")
    ref = SiglipImageProcessor(size={"height": 32, "width": 32})(images=image, return_tensors="pt")["pixel_values"][0]
    assert ours.shape == ref.shape == (3, 32, 32)
    assert torch.allclose(ours, ref.float(), atol=0.02)
    padded = preprocess_image(image, 32, aspect="pad")  # 40x20 -> red band in the middle, grey above/below
    assert padded[0, 0].abs().max() < 0.01 and padded[0, 16, 16] > 0.9
    cache = ImageCache({"image_size": 32, "aspect": "pad", "mean": [0.5] * 3, "std": [0.5] * 3})
    assert torch.allclose(cache.get(images[0]), padded, atol=1e-6)


def test_mixed_batch_splices_features_and_matches_single_samples(tiny_vlm, tiny_tokenizer, images):
    model = tiny_vlm.eval()
    enc = ConversationEncoder(tiny_tokenizer, model.image_token_id, model.num_image_tokens)
    cache = ImageCache(model.preprocessing)
    samples = [{"image": images[0], "conversations": _turns("<image>\nWhat colour?", "Red.")},
               {"image": images[1:], "conversations": _turns("<image> vs <image>", "Blue, green.")},
               {"conversations": _turns("Text only here.", "Fine.")}]
    examples = [{**enc.encode(s), "pixel_values": cache.stack(s.get("image") if isinstance(s.get("image"), list)
                                                              else [s["image"]] if "image" in s else [])}
                for s in samples]
    batch = collate(examples, tiny_tokenizer.pad_token_id)
    assert batch["pixel_values"].shape[0] == 3
    with torch.no_grad():
        embeds = model.embed(batch["input_ids"], batch["pixel_values"])
        feats = model.image_features(batch["pixel_values"]).reshape(-1, embeds.shape[-1])
        assert torch.allclose(embeds[batch["input_ids"] == model.image_token_id], feats, atol=1e-6)
        logits = model(batch["input_ids"], batch["pixel_values"])
        for i, e in enumerate(examples):
            alone = model(torch.tensor([e["input_ids"]]), e["pixel_values"])
            assert torch.allclose(logits[i, : len(e["input_ids"])], alone[0], atol=1e-4)
        loss, n = model.loss(batch)
    assert n == sum(sum(1 for t in e["labels"] if t != -100) for e in examples) and torch.isfinite(loss)
    with pytest.raises(ValueError, match="image-token slots"):
        model.embed(batch["input_ids"], batch["pixel_values"][:2])


def test_save_load_round_trip_in_hf_layout(tiny_vlm, tiny_tokenizer, images, tmp_path):
    from transformers import SiglipVisionModel

    out = save_vlm(tiny_vlm, tmp_path / "vl", tiny_tokenizer, IMAGE_TOKEN)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model_type"] == "infir_vl" and cfg["num_image_tokens"] == 16
    assert set(load_file(str(out / "projector.safetensors"))) == {"linear_1.weight", "linear_1.bias",
                                                                  "linear_2.weight", "linear_2.bias"}
    assert SiglipVisionModel.from_pretrained(str(out / "vision")).config.image_size == 32
    assert (out / "vision" / "preprocessor_config.json").exists() and (out / "lm" / "model.safetensors").exists()
    loaded, tok = load_vlm(out)
    enc = ConversationEncoder(tok, loaded.image_token_id, loaded.num_image_tokens)
    ids = torch.tensor([enc.encode({"image": images[0], "conversations": _turns("<image>hi", "yo")})["input_ids"]])
    pix = preprocess_image(images[0], 32)[None]
    with torch.no_grad():
        assert torch.allclose(tiny_vlm.eval()(ids, pix), loaded(ids, pix), atol=1e-5)


def test_batched_generation_equals_one_by_one(tiny_vlm, tiny_tokenizer, images):
    model = tiny_vlm.eval()
    enc = ConversationEncoder(tiny_tokenizer, model.image_token_id, model.num_image_tokens)
    cache = ImageCache(model.preprocessing)
    samples = [{"image": images[0], "conversations": _turns("Click the red circle.\n<image>")},
               {"image": images[1:], "conversations": _turns("<image><image>Describe the screen, please now.")},
               {"conversations": _turns("A mobile screen")}]
    together = generate(model, tiny_tokenizer, enc, cache, samples, max_new_tokens=6, batch_size=3)
    alone = [generate(model, tiny_tokenizer, enc, cache, [s], max_new_tokens=6)[0] for s in samples]
    assert together == alone and all(isinstance(t, str) for t in together)
    assert np.mean([len(t) for t in together]) > 0


def test_tiny_tower_position_init_std_is_applied():
    from infir.vlm.config import VisionConfig
    from infir.vlm.model import build_vision_tower

    torch.manual_seed(0)
    small = dict(preset="tiny", image_size=32, patch_size=8, hidden_size=64, num_layers=1, num_heads=4,
                 intermediate_size=64)
    def position_table(**extra):
        return build_vision_tower(VisionConfig(**small, **extra)).embeddings.position_embedding.weight.detach()

    default, wide = position_table(), position_table(position_init_std=1.0)
    assert abs(float(wide.std()) - 1.0) < 0.1
    assert float(default.std()) < 0.5


@pytest.mark.parametrize("layout", ["full_siglip", "vision_only"])
def test_vision_tower_loads_local_siglip_weights(tmp_path, layout):
    """vision.path takes a full SigLIP folder (like google/siglip-so400m-patch14-384) or a vision-only one;
    the loaded tower computes what the saved one does (so no weight was left at its random init)."""
    from transformers import SiglipConfig, SiglipModel, SiglipVisionModel

    from infir.vlm.config import VisionConfig
    from infir.vlm.model import build_vision_tower

    torch.manual_seed(0)
    vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
              "image_size": 32, "patch_size": 16}
    text = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4,
            "vocab_size": 100}
    if layout == "full_siglip":
        full = SiglipModel(SiglipConfig(text_config=text, vision_config=vision)).eval()
        saved, reference = full, full.vision_model
    else:
        saved = SiglipVisionModel(SiglipConfig(text_config=text, vision_config=vision).vision_config).eval()
        reference = saved
    saved.save_pretrained(tmp_path / "siglip")
    tower = build_vision_tower(VisionConfig(path=tmp_path / "siglip")).eval()
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = reference(pixel_values=pixels).last_hidden_state
        got = tower(pixel_values=pixels).last_hidden_state
    assert torch.allclose(got, expected, atol=1e-6)


def test_generation_warns_when_answers_are_cut(tiny_vlm, tiny_tokenizer, images, caplog):
    """Regression: a tokenizer that spells tool calls in more tokens than eval.max_new_tokens scored 0 silently."""
    model = tiny_vlm.eval()
    enc = ConversationEncoder(tiny_tokenizer, model.image_token_id, model.num_image_tokens)
    samples = [{"image": images[0], "conversations": _turns("Click the red circle.\n<image>")}] * 2
    with caplog.at_level("WARNING", logger="infir.vlm.generate"):
        generate(model, tiny_tokenizer, enc, ImageCache(model.preprocessing), samples, max_new_tokens=1)
    assert "2 of 2 completions reached max_new_tokens=1" in caplog.text


def test_toy_lm_text_warmup_learns_the_texts_and_groups_words_used_alike(tmp_path):
    """toy_lm.text_warmup_steps: the stand-in for a pretrained LM. Colour words, used alike in the
    texts, end up with related embeddings (the random init has none of that)."""
    import random

    from infir.model.hf_io import load_model
    from infir.vlm.tiny import make_tiny_lm

    rng = random.Random(0)
    colours, shapes = ["red", "green", "blue", "orange"], ["circle", "square", "triangle"]
    texts = [f"Tap the {rng.choice(colours)} {rng.choice(shapes)}." for _ in range(400)]
    texts += [f"A screen with a {rng.choice(colours)} {rng.choice(shapes)}." for _ in range(400)]

    def colour_similarity(folder):
        from infir.model.tokenizer import load_tokenizer

        tok, emb = load_tokenizer(folder), load_model(folder).model.embed_tokens.weight.detach()
        ids = [tok(" " + c, add_special_tokens=False)["input_ids"] for c in colours]
        assert all(len(i) == 1 for i in ids)
        vecs = torch.nn.functional.normalize(emb[[i[0] for i in ids]], dim=-1)
        sim = vecs @ vecs.T
        return float((sim.sum() - len(colours)) / (len(colours) * (len(colours) - 1)))

    cold = make_tiny_lm(tmp_path / "cold", texts, vocab_size=600, num_hidden_layers=1)
    warm = make_tiny_lm(tmp_path / "warm", texts, vocab_size=600, num_hidden_layers=1, text_warmup_steps=150)
    assert colour_similarity(warm) > colour_similarity(cold) + 0.2


def _greedy_without_cache(model, tokenizer, encoder, cache, sample, max_new_tokens, stop_ids):
    """Greedy decoding by its definition: a full forward over prompt embeddings (image features spliced in) plus
    the generated tokens' embeddings at every step, no KV cache, no batching: what the VLM's own loop computed."""
    from infir.vlm.processor import sample_images

    ids = torch.tensor([encoder.encode(sample, add_generation_prompt=True)["input_ids"]])
    embeds = model.embed(ids, cache.stack(sample_images(sample)))
    out = []
    for _ in range(max_new_tokens):
        token = int(model.lm(None, inputs_embeds=embeds)[0, -1].argmax())
        if token in stop_ids:
            return tokenizer.decode(out, skip_special_tokens=True), True
        out.append(token)
        embeds = torch.cat([embeds, model.lm.embed_tokens(torch.tensor([[token]]))], dim=1)
    return tokenizer.decode(out, skip_special_tokens=True), False


def test_grounding_eval_decodes_through_the_engine_with_the_same_results(tiny_vlm, tiny_tokenizer, images,
                                                                         monkeypatch):
    """The VLM has no decode loop of its own: `generate` hands embedded prompts to infir's engine (batched, KV
    cache, EOS ids), and the grounding answers and scores equal greedy decoding by definition."""
    from collections import Counter

    from infir.generation.engine import InfirGenerator
    from infir.vlm.evaluate import grounding_prompt_sample, score_grounding

    model = tiny_vlm.eval()
    with torch.no_grad():  # wider weights than the init: answers that differ per image and instruction
        for p in model.lm.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.3)
    tok, enc, cache = tiny_tokenizer, None, ImageCache(model.preprocessing)
    enc = ConversationEncoder(tok, model.image_token_id, model.num_image_tokens)
    records = [{"image": images[i % 3], "instruction": text, "bbox": [100 * i, 0, 100 * i + 400, 1000],
                "platform": "web", "data_type": "text"}
               for i, text in enumerate(["Click the red circle.", "Describe the screen.", "A mobile screen",
                                         "Click Save", "Click the blue square."])]
    samples = [grounding_prompt_sample(r) for r in records]
    stop = {tok.convert_tokens_to_ids("<|eot_id|>"), tok.convert_tokens_to_ids("<|end_of_text|>")}
    with torch.no_grad():  # make end-of-turn compete with the most frequent answer token: EOS at varied steps
        free = [_greedy_without_cache(model, tok, enc, cache, s, 10, stop)[0] for s in samples]
        common = Counter(t for text in free for t in tok.encode(text, add_special_tokens=False)).most_common(1)[0][0]
        head = model.lm.lm_head.weight
        head[tok.convert_tokens_to_ids("<|eot_id|>")] = head[common] + 0.3 * torch.randn(head.shape[1])
        expected, ended = zip(*(_greedy_without_cache(model, tok, enc, cache, s, 10, stop) for s in samples),
                              strict=True)
    expected = list(expected)
    assert len(set(expected)) > 2 and any(ended) and not all(ended)  # some stop at EOS, some at max tokens
    batches = []
    original = InfirGenerator._generate_batch
    monkeypatch.setattr(InfirGenerator, "_generate_batch",
                        lambda self, *a, **k: batches.append(len(a[0])) or original(self, *a, **k))
    got = generate(model, tok, enc, cache, samples, max_new_tokens=10, batch_size=2)
    assert batches == [2, 2, 1]  # every answer came from the engine, in batches of two
    assert got == expected
    assert score_grounding(records, got) == score_grounding(records, expected)
    assert stop <= InfirGenerator(model.lm, tok).eos_ids
