"""Weight-only int8/int4 quantization: outputs stay close to float, sizes shrink, generation still works."""

from __future__ import annotations

import copy

import pytest
import torch

from infir.generation import SamplingParams
from infir.generation.engine import InfirGenerator
from infir.model.hf_io import load_model
from infir.model.llama import PRESETS, Llama
from infir.serve.quantize import Int8Embedding, Int8WeightOnlyLinear, model_bytes, quantize_model


def _model() -> Llama:
    torch.manual_seed(0)
    return Llama(PRESETS["micro"]).eval()


@pytest.mark.parametrize("mode, max_rel_error, max_size_ratio",
                         [("int8", 0.02, 0.3), ("int4", 0.2, 0.2), ("int8-dynamic", 0.05, 0.35)])
def test_quantized_logits_stay_close_and_model_shrinks(mode, max_rel_error, max_size_ratio):
    model = _model()
    ids = torch.randint(0, model.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model(ids)
        quant = quantize_model(copy.deepcopy(model), mode)
        out = quant(ids)
    rel = (out - ref).norm() / ref.norm()
    assert rel < max_rel_error, rel
    assert model_bytes(quant) < max_size_ratio * model_bytes(model)
    assert not any(isinstance(m, torch.nn.Linear) for m in quant.modules())


def test_int8_linear_matches_dequantized_weight_and_ties_embedding():
    model = quantize_model(_model(), "int8")
    head = model.lm_head
    assert isinstance(head, Int8WeightOnlyLinear) and isinstance(model.model.embed_tokens, Int8Embedding)
    assert model.model.embed_tokens.qweight.data_ptr() == head.qweight.data_ptr()  # tied: stored once
    x = torch.randn(3, model.config.hidden_size)
    torch.testing.assert_close(head(x), x @ head.weight.T, atol=0.05, rtol=0.02)  # bf16 activations
    ids = torch.tensor([[1, 2, 3]])
    torch.testing.assert_close(model.model.embed_tokens(ids)[0], head.weight[[1, 2, 3]])


def test_quantized_model_predicts_like_the_float_one_and_generates(tiny_model_dir):
    float_gen = InfirGenerator.from_pretrained(tiny_model_dir, device="cpu")
    quant_model = quantize_model(load_model(tiny_model_dir), "int8")
    ids = torch.tensor([float_gen.tokenizer.encode("The quick brown fox jumps over the lazy dog. " * 4)])
    with torch.no_grad():  # teacher-forced next-token choices (no compounding of a first difference)
        agree = (float_gen.model(ids).argmax(-1) == quant_model(ids).argmax(-1)).float().mean()
    assert agree >= 0.8, agree  # a random tiny model has many near-ties; chance is 1/384
    quant_gen = InfirGenerator(quant_model, float_gen.tokenizer, eos_ids=set())
    out = quant_gen.generate(["Hello!", "The quick brown fox"], SamplingParams(max_new_tokens=8, temperature=0.0))
    assert [len(c.token_ids) for c in out] == [8, 8] and all(c.finish_reason == "length" for c in out)


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="unknown quantization"):
        quantize_model(_model(), "int3")
