"""Export to Hugging Face (transformers loads it, logits match) and GGUF (read back with gguf's reader)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from infir.model.hf_io import load_model
from infir.model.llama import llama_cpp_permute, rope_inv_freq
from infir.serve.export import export_gguf, export_hf

REPO = Path(__file__).resolve().parents[2]


def test_hf_export_loads_in_transformers_with_equal_logits(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from infir.model.chat_template import render_chat

    out = export_hf(tiny_model_dir, tmp_path / "hf")
    hf_model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    ours = load_model(tiny_model_dir)
    ids = torch.randint(0, ours.config.vocab_size, (2, 17), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(hf_model(ids).logits, ours(ids), atol=1e-4, rtol=1e-4)
    tok = AutoTokenizer.from_pretrained(out)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello!"}]
    rendered = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert rendered == render_chat(messages, add_generation_prompt=True)


def _field(reader, key):
    return reader.fields[key].contents()


@pytest.mark.parametrize("quant", ["f16", "q8_0"])
def test_gguf_export_reads_back(tiny_model_dir, tmp_path, quant):
    import gguf

    from infir.model.tokenizer import load_tokenizer

    path = export_gguf(tiny_model_dir, tmp_path / f"m-{quant}.gguf", quant=quant)
    reader = gguf.GGUFReader(path)
    model = load_model(tiny_model_dir)
    cfg = model.config
    tok = load_tokenizer(tiny_model_dir)

    assert _field(reader, "general.architecture") == "llama"
    assert _field(reader, "llama.block_count") == cfg.num_hidden_layers
    assert _field(reader, "llama.embedding_length") == cfg.hidden_size
    assert _field(reader, "llama.feed_forward_length") == cfg.intermediate_size
    assert _field(reader, "llama.attention.head_count") == cfg.num_attention_heads
    assert _field(reader, "llama.attention.head_count_kv") == cfg.num_key_value_heads
    assert _field(reader, "llama.rope.freq_base") == pytest.approx(cfg.rope_theta)
    assert _field(reader, "tokenizer.ggml.model") == "gpt2"
    assert _field(reader, "tokenizer.ggml.pre") == "llama-bpe"
    tokens = _field(reader, "tokenizer.ggml.tokens")
    assert tokens == tok.convert_ids_to_tokens(list(range(cfg.vocab_size)))
    types = _field(reader, "tokenizer.ggml.token_type")
    assert types[tok.convert_tokens_to_ids("<|eot_id|>")] == gguf.TokenType.CONTROL
    assert types[tok.convert_tokens_to_ids("a")] == gguf.TokenType.NORMAL
    assert len(_field(reader, "tokenizer.ggml.merges")) > 0
    assert _field(reader, "tokenizer.ggml.bos_token_id") == tok.bos_token_id
    assert _field(reader, "tokenizer.ggml.add_bos_token") is True
    assert _field(reader, "tokenizer.ggml.eot_token_id") == tok.convert_tokens_to_ids("<|eot_id|>")
    assert "<|start_header_id|>" in _field(reader, "tokenizer.chat_template")

    tensors = {t.name: t for t in reader.tensors}
    state = model.state_dict()
    expected_names = {"token_embd.weight", "output_norm.weight", "rope_freqs.weight"} | {
        f"blk.{i}.{n}.weight" for i in range(cfg.num_hidden_layers)
        for n in ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down")
    }
    assert set(tensors) == expected_names  # tied embeddings: no separate output.weight

    def read(name):
        t = tensors[name]
        return torch.from_numpy(np.asarray(gguf.quants.dequantize(t.data, t.tensor_type)).astype(np.float32))

    atol = 2e-3 if quant == "f16" else 0.2 / 127 * 1.5  # q8_0: half a quantization step of ~|w|max/127
    q_hf = state["model.layers.1.self_attn.q_proj.weight"]
    torch.testing.assert_close(read("blk.1.attn_q.weight"), llama_cpp_permute(q_hf, cfg.num_attention_heads),
                               atol=atol * 5, rtol=0)
    k_hf = state["model.layers.0.self_attn.k_proj.weight"]
    torch.testing.assert_close(read("blk.0.attn_k.weight"), llama_cpp_permute(k_hf, cfg.num_key_value_heads),
                               atol=atol * 5, rtol=0)
    torch.testing.assert_close(read("blk.0.ffn_down.weight"), state["model.layers.0.mlp.down_proj.weight"],
                               atol=atol * 5, rtol=0)
    torch.testing.assert_close(read("token_embd.weight"), state["model.embed_tokens.weight"], atol=atol * 5, rtol=0)
    assert tensors["output_norm.weight"].tensor_type == gguf.GGMLQuantizationType.F32
    expected_type = gguf.GGMLQuantizationType.F16 if quant == "f16" else gguf.GGMLQuantizationType.Q8_0
    assert tensors["blk.0.attn_q.weight"].tensor_type == expected_type
    # llama.cpp divides each RoPE frequency by rope_freqs: that must give infir's Llama 3 scaled frequencies.
    base = 1.0 / (cfg.rope_theta ** (torch.arange(0, cfg.head_dim, 2, dtype=torch.float64) / cfg.head_dim))
    torch.testing.assert_close((base / read("rope_freqs.weight").double()).float(), rope_inv_freq(cfg))


def test_llama_cpp_permute_is_the_interleaved_rope_layout():
    """Row r of a permuted head is HF row (r // 2) + (r % 2) * D/2: pairs (i, i + D/2) become adjacent."""
    head_dim, heads = 8, 2
    w = torch.arange(heads * head_dim, dtype=torch.float32)[:, None]
    perm = llama_cpp_permute(w, heads)[:, 0].long().tolist()
    expected = [h * head_dim + (r // 2) + (r % 2) * head_dim // 2 for h in range(heads) for r in range(head_dim)]
    assert perm == expected


def test_export_cli_writes_gguf_and_rejects_unknown_format(tiny_model_dir, tmp_path):
    out = tmp_path / "cli.gguf"
    cmd = [sys.executable, "-m", "infir.cli", "export", str(tiny_model_dir), "--format", "gguf",
           "--quant", "q8_0", "--output", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    assert out.stat().st_size > 0 and out.read_bytes()[:4] == b"GGUF"
    bad = subprocess.run(cmd[:6] + ["onnx", "--output", str(tmp_path / "x")], capture_output=True, text=True,
                         cwd=REPO, timeout=120)
    assert bad.returncode != 0 and "unknown format" in bad.stderr


def _infir_greedy(model, ids: list[int], n: int) -> list[int]:
    out = list(ids)
    with torch.no_grad():
        for _ in range(n):
            out.append(int(model(torch.tensor([out]))[0, -1].argmax()))
    return out[len(ids):]


def test_gguf_runs_in_llama_cpp_with_the_same_greedy_tokens(tiny_model_dir, tmp_path):
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed here")
    path = export_gguf(tiny_model_dir, tmp_path / "m.gguf", quant="f32")
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=128, n_threads=1, verbose=False, logits_all=False)
    prompt = [5, 17, 42, 99, 7, 250]
    llm.reset()
    got = []
    for token in llm.generate(prompt, temp=0.0, top_k=1, reset=True):
        got.append(int(token))
        if len(got) == 12:
            break
    assert got == _infir_greedy(load_model(tiny_model_dir), prompt, 12)


def test_run_export_stage_writes_every_configured_format(tiny_model_dir, tmp_path):
    import gguf

    from infir.serve.config import ExportConfig
    from infir.serve.export import run_export

    written = run_export(tiny_model_dir, tmp_path / "export", ExportConfig(formats=["hf", "gguf"], gguf_quant="f16"))
    assert (written["hf"] / "model.safetensors").exists() and (written["hf"] / "tokenizer.json").exists()
    assert written["gguf"].name == "model-f16.gguf"
    assert gguf.GGUFReader(written["gguf"]).fields["general.architecture"].contents() == "llama"
