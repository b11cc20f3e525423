"""The VLM speaks the chat layout of its LM's tokenizer family (the registry's): Llama 3 or ChatML (Qwen2.5).

Its encoder builds ids turn by turn (image slots inside turns, loss on assistant turns only); these tests
check that the ids equal what the family's own chat template gives, that only assistant content and its
end-of-turn token are learned, and that a VLM on a Qwen2 LM trains and decodes through the engine.
"""

from __future__ import annotations

import pytest
import torch

from infir.model import registry
from infir.model.tokenizer import train_bpe_tokenizer
from infir.vlm.model import build_vlm
from infir.vlm.processor import ConversationEncoder
from infir.vlm.train import train_stage

from .conftest import TINY_VISION

TEXTS = ["Click the red circle.", "Describe the screen.", "A mobile screen with a Save button.",
         "The red circle is at the top."] * 30
CONVERSATION = [{"from": "human", "value": "Describe the screen."}, {"from": "gpt", "value": "A red circle."},
                {"from": "human", "value": "Where is it?"}, {"from": "gpt", "value": "At the top."}]


@pytest.fixture(scope="module", params=["llama3", "qwen2"])
def family_tokenizer(request):
    return request.param, train_bpe_tokenizer(TEXTS, vocab_size=400, family=request.param)


def _template_ids(tok, turns: list[dict], add_generation_prompt: bool = False) -> list[int]:
    """The tokenizer's own Jinja chat template (the one SFT and serving use), the whole text tokenized at once."""
    messages = [{"role": "user" if t["from"] == "human" else "assistant", "content": t["value"]} for t in turns]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    return tok(text, add_special_tokens=False)["input_ids"]


def test_text_turns_equal_the_family_template_and_only_assistant_turns_are_learned(family_tokenizer) -> None:
    family, tok = family_tokenizer
    layout = registry.chat_layout(tok)
    assert layout is registry.ARCHITECTURES["llama" if family == "llama3" else "qwen2"].chat_layout
    enc = ConversationEncoder(tok, image_token_id=tok.convert_tokens_to_ids(registry.image_token(tok)),
                              num_image_tokens=4)
    out = enc.encode({"conversations": CONVERSATION})
    assert out["input_ids"] == _template_ids(tok, CONVERSATION)
    learned = tok.decode([t for t in out["labels"] if t != -100])
    end = layout.end_of_turn
    assert learned == f"A red circle.{end}At the top.{end}"
    prompt = enc.encode({"conversations": CONVERSATION}, add_generation_prompt=True)["input_ids"]
    assert prompt == _template_ids(tok, CONVERSATION[:3], add_generation_prompt=True)
    if family == "qwen2":  # ChatML: no BOS, Qwen2.5's default system turn, never learned
        assert tok.decode(out["input_ids"]).startswith("<|im_start|>system\nYou are Qwen")


def test_image_slots_sit_inside_the_user_turn(family_tokenizer) -> None:
    _, tok = family_tokenizer
    image_id = tok.convert_tokens_to_ids(registry.image_token(tok))
    enc = ConversationEncoder(tok, image_token_id=image_id, num_image_tokens=4)
    ids = enc.encode({"image": "x.png", "conversations": CONVERSATION[:2]})["input_ids"]
    assert ids.count(image_id) == 4
    text_only = enc.encode({"conversations": [{"from": "human", "value": "\nDescribe the screen."},
                                              CONVERSATION[1]]})["input_ids"]
    first = ids.index(image_id)
    assert ids[:first] + ids[first + 4:] == text_only  # the image mark went before the user's text


def test_a_tokenizer_of_no_supported_chat_family_is_named_clearly() -> None:
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    bare = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"a": 0, "[UNK]": 1},
                                                                               unk_token="[UNK]")))
    with pytest.raises(ValueError, match=r"no supported family \(llama: .*<\|eot_id\|>.*qwen2: <\|im_start\|>"):
        ConversationEncoder(bare, image_token_id=0, num_image_tokens=4)


def test_a_vlm_on_a_qwen2_lm_trains_and_decodes_to_im_end(tmp_path) -> None:
    """The LM of InfiR-VL may be any registered family: a Qwen2 LM (q/k/v biases) with a Qwen2.5-family
    tokenizer, its image features in <|image_pad|> slots, learns and stops at <|im_end|>."""
    from PIL import Image

    from infir.vlm.config import StageConfig
    from infir.vlm.dataset import ImageCache, encode_samples
    from infir.vlm.generate import generate

    tok = train_bpe_tokenizer(TEXTS, vocab_size=400, family="qwen2")
    torch.manual_seed(0)
    cfg = registry.preset("qwen2-micro", vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                          num_attention_heads=2, num_key_value_heads=1, eos_token_id=tok.eos_token_id)
    lm = registry.build_model(cfg)
    model = build_vlm(TINY_VISION, lm, tok, registry.image_token(tok))
    assert model.image_token_id == tok.convert_tokens_to_ids("<|image_pad|>")
    enc = ConversationEncoder(tok, model.image_token_id, model.num_image_tokens)
    paths = []
    for colour in ["red", "blue"]:
        Image.new("RGB", (40, 40), colour).save(tmp_path / f"{colour}.png")
        paths.append(str(tmp_path / f"{colour}.png"))
    samples = [{"image": paths[i % 2], "conversations": [
        {"from": "human", "value": "<image>\nDescribe the screen."},
        {"from": "gpt", "value": ["A red circle.", "The screen."][i % 2]}]} for i in range(8)]
    cache = ImageCache(model.preprocessing)
    examples, bad = encode_samples(samples, enc)
    assert not bad
    stage = StageConfig(name="s", vision="frozen", projector="full", lm="full", batch_size=4, optimizer={"lr": 1e-2},
                        epochs=60, schedule={"warmup_ratio": 0.0})
    summary = train_stage(model, examples, stage, cache, tok.pad_token_id, torch.device("cpu"))
    assert summary["loss_last"] < 0.3 * summary["loss_first"]
    model.eval()
    prompts = [{"image": s["image"], "conversations": s["conversations"][:1]} for s in samples[:2]]
    answers = generate(model, tok, enc, cache, prompts, max_new_tokens=12)
    assert answers == ["A red circle.", "The screen."]  # learned, and ended at <|im_end|> (no max-token cut)
