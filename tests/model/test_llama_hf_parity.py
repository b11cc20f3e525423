"""Our Llama and transformers' LlamaForCausalLM are interchangeable: same weights, same logits."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from transformers import LlamaForCausalLM

from infir.model.hf_io import load_model, save_model
from infir.model.llama import PRESETS, Llama

TOL = 1e-4  # fp32 on CPU: differences are summation-order noise


@pytest.fixture()
def tiny() -> Llama:
    torch.manual_seed(0)
    cfg = dataclasses.replace(PRESETS["micro"], max_position_embeddings=256)
    return Llama(cfg).eval()


def test_saved_folder_loads_in_transformers_with_same_logits(tiny: Llama, tmp_path) -> None:
    save_model(tiny, tmp_path / "m")
    hf = LlamaForCausalLM.from_pretrained(tmp_path / "m").eval()
    ids = torch.randint(0, tiny.config.vocab_size, (2, 40))
    with torch.no_grad():
        ours, theirs = tiny(ids), hf(ids).logits
    assert torch.allclose(ours, theirs, atol=TOL), (ours - theirs).abs().max()


def test_transformers_folder_loads_in_infir(tiny: Llama, tmp_path) -> None:
    save_model(tiny, tmp_path / "m")
    hf = LlamaForCausalLM.from_pretrained(tmp_path / "m").eval()
    torch.manual_seed(1)
    for p in hf.parameters():
        p.data.normal_(0, 0.05)
    hf.save_pretrained(tmp_path / "hf")
    ours = load_model(tmp_path / "hf")
    ids = torch.randint(0, tiny.config.vocab_size, (1, 33))
    with torch.no_grad():
        assert torch.allclose(ours(ids), hf(ids).logits, atol=TOL)


def test_llama3_rope_scaling_matches_at_long_positions(tmp_path) -> None:
    cfg = dataclasses.replace(PRESETS["micro"], max_position_embeddings=20000)
    torch.manual_seed(0)
    model = Llama(cfg).eval()
    save_model(model, tmp_path / "m")
    hf = LlamaForCausalLM.from_pretrained(tmp_path / "m").eval()
    ids = torch.randint(0, cfg.vocab_size, (1, 8))
    pos = torch.arange(9000, 9008)[None]
    with torch.no_grad():
        assert torch.allclose(model(ids, position_ids=pos), hf(ids, position_ids=pos).logits, atol=TOL)


def test_kv_cache_decoding_equals_full_forward(tiny: Llama) -> None:
    ids = torch.randint(0, tiny.config.vocab_size, (2, 12))
    with torch.no_grad():
        full = tiny(ids)
        cache = tiny.new_kv_cache(2, 32)
        first = tiny(ids[:, :8], kv_cache=cache)
        steps = [tiny(ids[:, i : i + 1], kv_cache=cache) for i in range(8, 12)]
    assert torch.allclose(torch.cat([first, *steps], 1), full, atol=TOL)


def test_document_mask_isolates_packed_documents(tiny: Llama) -> None:
    a = torch.randint(0, tiny.config.vocab_size, (1, 7))
    b = torch.randint(0, tiny.config.vocab_size, (1, 5))
    packed = torch.cat([a, b], 1)
    docs = torch.tensor([[0] * 7 + [1] * 5])
    pos = torch.cat([torch.arange(7), torch.arange(5)])[None]
    with torch.no_grad():
        out = tiny(packed, position_ids=pos, document_ids=docs)
        assert torch.allclose(out[:, :7], tiny(a), atol=TOL)
        assert torch.allclose(out[:, 7:], tiny(b), atol=TOL)


def test_one_b_preset_has_the_papers_parameter_count() -> None:
    assert PRESETS["llama3.2-1b"].num_parameters() == 1_235_814_400
