"""The model registry: HF model_type -> architecture; clear errors for folders infir cannot load; the seam holds
(outside infir.model nothing imports a concrete architecture)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import torch

from infir.model import registry
from infir.model.base import CausalLM, ModelConfig, is_causal_lm
from infir.model.hf_io import load_model, save_model

ROOT = Path(__file__).resolve().parents[2]

# Qwen/Qwen2.5-0.5B's config.json as released (transformers 4.x layout).
QWEN25_05B = {
    "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643, "eos_token_id": 151643,
    "hidden_act": "silu", "hidden_size": 896, "initializer_range": 0.02, "intermediate_size": 4864,
    "max_position_embeddings": 32768, "max_window_layers": 24, "model_type": "qwen2", "num_attention_heads": 14,
    "num_hidden_layers": 24, "num_key_value_heads": 2, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
    "sliding_window": 32768, "tie_word_embeddings": True, "torch_dtype": "bfloat16", "transformers_version": "4.40.1",
    "use_cache": True, "use_mrope": False, "use_sliding_window": False, "vocab_size": 151936,
}


def test_released_qwen25_config_reads_as_the_preset() -> None:
    assert registry.config_from_hf(QWEN25_05B) == registry.preset("qwen2.5-0.5b")


@pytest.mark.parametrize("name", ["qwen2.5-0.5b", "qwen2.5-7b", "llama3.2-1b"])
def test_presets_have_transformers_parameter_counts(name) -> None:
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = registry.preset(name)
    hf_cfg = AutoConfig.for_model(**cfg.to_hf_dict())
    with torch.device("meta"):
        hf = AutoModelForCausalLM.from_config(hf_cfg)
    assert cfg.num_parameters() == sum(p.numel() for p in hf.parameters())  # tied weights counted once
    assert {"qwen2.5-0.5b": 494_032_768, "qwen2.5-7b": 7_615_616_512, "llama3.2-1b": 1_235_814_400}[name] == \
        cfg.num_parameters()


def test_transformers5_config_layout_keeps_llama3_rope_scaling(tmp_path) -> None:
    """transformers 5 writes rope_parameters (theta + scaling in one dict) instead of rope_theta/rope_scaling."""
    from transformers import LlamaForCausalLM

    cfg = registry.preset("micro", max_position_embeddings=20000)
    torch.manual_seed(0)
    ours = registry.build_model(cfg).eval()
    save_model(ours, tmp_path / "m")
    LlamaForCausalLM.from_pretrained(tmp_path / "m").save_pretrained(tmp_path / "v5")
    written = json.loads((tmp_path / "v5" / "config.json").read_text())
    assert "rope_parameters" in written and "rope_scaling" not in written
    again = load_model(tmp_path / "v5")
    assert again.config.rope_scaling == cfg.rope_scaling and again.config.rope_theta == cfg.rope_theta
    ids, pos = torch.randint(0, cfg.vocab_size, (1, 6)), torch.arange(9000, 9006)[None]
    with torch.no_grad():
        torch.testing.assert_close(again(ids, position_ids=pos), ours(ids, position_ids=pos), atol=0, rtol=0)


def test_models_implement_the_protocol() -> None:
    for name in ("micro", "qwen2-micro"):
        model = registry.build_model(registry.preset(name))
        assert is_causal_lm(model) and isinstance(model, CausalLM) and isinstance(model.config, ModelConfig)
        assert registry.architecture_of(model).model_type == model.config.model_type
    assert not is_causal_lm(torch.nn.Linear(2, 2))


def _folder(tmp_path: Path, config: dict) -> Path:
    path = tmp_path / "m"
    path.mkdir()
    (path / "config.json").write_text(json.dumps(config))
    return path


def test_unsupported_architecture_names_its_model_type_and_the_supported_ones(tmp_path) -> None:
    path = _folder(tmp_path, {"model_type": "mistral", "hidden_size": 64, "num_attention_heads": 4})
    with pytest.raises(ValueError, match=r"model_type 'mistral' is not supported by infir \(supported: llama, qwen2\)"):
        load_model(path)
    from typer.testing import CliRunner

    from infir.cli import app

    for args in (["serve", str(path)], ["export", str(path), "--format", "gguf", "--output", str(tmp_path / "x")]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2, result.output
        assert "model_type 'mistral' is not supported" in result.output and "llama, qwen2" in result.output


def test_weights_that_do_not_fit_the_config_name_the_keys_and_architecture(tmp_path) -> None:
    qwen = registry.build_model(registry.preset("qwen2-micro"))
    save_model(qwen, tmp_path / "q")
    config = json.loads((tmp_path / "q" / "config.json").read_text())
    config.update(model_type="llama", architectures=["LlamaForCausalLM"], head_dim=16)
    (tmp_path / "q" / "config.json").write_text(json.dumps(config))  # Qwen2 weights, Llama config
    with pytest.raises(ValueError) as err:
        load_model(tmp_path / "q")
    message = str(err.value)
    assert "llama config (Llama)" in message and "model.layers.0.self_attn.q_proj.bias" in message
    assert "unexpected" in message and "missing []" in message


def test_unsupported_features_of_a_known_architecture_are_refused() -> None:
    with pytest.raises(ValueError, match="sliding-window"):
        registry.config_from_hf({**QWEN25_05B, "use_sliding_window": True, "max_window_layers": 21})
    with pytest.raises(ValueError, match="RoPE scaling 'yarn' is not implemented"):
        registry.config_from_hf({**QWEN25_05B, "rope_scaling": {"type": "yarn", "factor": 4.0,
                                                                "original_max_position_embeddings": 32768}})
    with pytest.raises(ValueError, match="unknown model preset 'gpt2'"):
        registry.preset("gpt2")


def test_outside_infir_model_nothing_imports_a_concrete_architecture() -> None:
    """Every registered architecture's modules (and the shared decoder) are imported only inside infir.model;
    bench scripts go through the registry too. (pyproject's `architectures-behind-registry` contract says the
    same for lint-imports; this test follows new registry entries by itself.)"""
    import grimp

    concrete = {"infir.model.decoder"}
    for arch in registry.ARCHITECTURES.values():
        concrete |= {arch.module_class.__module__, arch.config_class.__module__}
    graph = grimp.build_graph("infir", cache_dir=None)
    offenders = sorted(f"{importer} -> {module}" for module in concrete
                       for importer in graph.find_modules_that_directly_import(module)
                       if not importer.startswith("infir.model."))
    for script in sorted((ROOT / "bench").glob("*.py")):
        for node in ast.walk(ast.parse(script.read_text())):
            names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            names += [a.name for a in node.names] if isinstance(node, ast.Import) else []
            offenders += [f"bench/{script.name} -> {n}" for n in names if n in concrete]
    assert offenders == [], "use infir.model.registry / infir.model.base instead:\n" + "\n".join(offenders)


def test_rope_frequencies_stay_float32_when_the_model_is_cast(tmp_path) -> None:
    """Regression: load_model(dtype=bf16) cast the RoPE buffer too (0.4% frequency error, radians of angle
    error at long positions); the angles must be the float32 ones whatever the weights' dtype."""
    for name in ("micro", "qwen2-micro"):
        model = registry.build_model(registry.preset(name))
        reference = model.inv_freq.clone()
        save_model(model, tmp_path / name)
        for cast in (load_model(tmp_path / name, dtype=torch.bfloat16), model.to(torch.float16)):
            assert cast.inv_freq.dtype == torch.float32 and torch.equal(cast.inv_freq, reference)
        assert next(model.parameters()).dtype == torch.float16


def test_adding_an_architecture_is_one_file_and_one_registry_entry(monkeypatch, tmp_path) -> None:
    """A new decoder (its config + module: what would be its own file) registered with one entry is built from a
    preset, saved, loaded from its folder, trained by the loop and served by infir's engine, with no other edit."""
    import dataclasses

    from infir.generation import SamplingParams, load_generator
    from infir.generation.engine import InfirGenerator
    from infir.model.decoder import DecoderConfig, DecoderLM
    from infir.model.tokenizer import train_bpe_tokenizer
    from infir.train.loop import CausalLMLoss

    @dataclasses.dataclass
    class ToyConfig(DecoderConfig):
        model_type = "toy"
        hf_architecture = "ToyForCausalLM"
        qkv_bias = True

    class Toy(DecoderLM):
        pass

    small = ToyConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=128)
    entry = dataclasses.replace(registry.ARCHITECTURES["qwen2"], model_type="toy", config_class=ToyConfig,
                                module_class=Toy, presets={"toy-micro": small})
    monkeypatch.setitem(registry.ARCHITECTURES, "toy", entry)
    tok = train_bpe_tokenizer(["a toy architecture says hello"] * 20, vocab_size=290)
    model = registry.build_model(registry.preset("toy-micro"))
    save_model(model, tmp_path / "toy", tokenizer=tok)
    assert type(load_model(tmp_path / "toy")) is Toy
    loss_sum, ce = CausalLMLoss(model)(torch.randint(0, 290, (1, 9)), torch.randint(0, 290, (1, 9)))
    loss_sum.backward()
    assert model.layers[0].self_attn.k_proj.bias.grad is not None
    gen = load_generator(tmp_path / "toy", device="cpu")
    assert isinstance(gen, InfirGenerator) and type(gen.model) is Toy
    assert len(gen.generate(["hello"], SamplingParams(max_new_tokens=3))[0].token_ids) <= 3


def test_end_of_sequence_rule_per_family() -> None:
    """Llama 3: end of text, end of turn and end of message (Llama 3.1/3.2 Instruct's generation_config eos
    [128001, 128008, 128009]; llama.cpp stops there too); Qwen2: <|endoftext|> and <|im_end|>."""
    from infir.generation.text import eos_ids_for
    from infir.model.tokenizer import train_bpe_tokenizer

    llama_tok = train_bpe_tokenizer(["some words to learn"] * 10, vocab_size=300)
    qwen_tok = train_bpe_tokenizer(["some words to learn"] * 10, vocab_size=300, family="qwen2")
    names = {"<|end_of_text|>", "<|eot_id|>", "<|eom_id|>"}
    assert eos_ids_for(None, llama_tok) == {llama_tok.convert_tokens_to_ids(t) for t in names}
    assert eos_ids_for(None, qwen_tok) == {qwen_tok.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|im_end|>")}
    assert registry.special_ids(qwen_tok) == {"family": "qwen2", "bos": None,
                                              "end_of_text": qwen_tok.convert_tokens_to_ids("<|endoftext|>"),
                                              "end_of_turn": qwen_tok.convert_tokens_to_ids("<|im_end|>")}
