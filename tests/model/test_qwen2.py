"""Qwen2 (the Qwen2.5 family) beside Llama: a tiny HF Qwen2 folder written by transformers itself (random weights,
non-zero q/k/v biases, untied head, padded vocabulary like Qwen2.5's) loads, serves, generates, fine-tunes and
exports exactly as transformers computes it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from infir.generation import SamplingParams
from infir.generation.engine import InfirGenerator
from infir.model.hf_io import load_model

TOL = 1e-4  # fp32 on CPU: summation-order noise
TEXTS = [
    "The quick brown fox jumps over the lazy dog. " * 3,
    "Small language models can reason when trained on careful data.",
    "def add(a, b):\n    return a + b\n",
    "What is 12 plus 30? The answer is 42.",
    "Hello! How are you today? I am fine, thank you.",
] * 20
PROMPTS = ["Question: what is 2", "def add(a", "The quick brown fox jumps over the lazy dog. A B C", "Hello"]


def build_hf_qwen2(out: Path, seed: int = 0) -> Path:
    """transformers' Qwen2ForCausalLM (save_pretrained, its own config layout) + a Qwen2-family BPE tokenizer."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from infir.model.tokenizer import train_bpe_tokenizer

    tok = train_bpe_tokenizer(TEXTS, vocab_size=400, family="qwen2")
    cfg = Qwen2Config(vocab_size=len(tok) + 14, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, rope_theta=1e6,
                      rms_norm_eps=1e-6, tie_word_embeddings=False, bos_token_id=None,
                      eos_token_id=tok.convert_tokens_to_ids("<|endoftext|>"))
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(cfg).eval()
    with torch.no_grad():  # larger than the init so greedy outputs vary with the prompt; biases clearly non-zero
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0.0, 0.5)
            elif p.dim() == 2:
                p.normal_(0.0, 0.2)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def qwen2_dir(tmp_path_factory) -> Path:
    return build_hf_qwen2(tmp_path_factory.mktemp("qwen2") / "tiny-qwen2")


@pytest.fixture(scope="module")
def hf_model(qwen2_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(qwen2_dir, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def gen(qwen2_dir) -> InfirGenerator:
    from infir.generation import load_generator

    g = load_generator(qwen2_dir, device="cpu")
    assert isinstance(g, InfirGenerator)  # the registry routes qwen2 folders to infir's engine
    return g


def test_loads_with_biases_untied_head_and_equal_logits(qwen2_dir, hf_model) -> None:
    model = load_model(qwen2_dir)
    cfg = model.config
    assert (cfg.model_type, cfg.tie_word_embeddings, cfg.rope_theta, cfg.rms_norm_eps) == ("qwen2", False, 1e6, 1e-6)
    assert model.lm_head.weight.data_ptr() != model.embed_tokens.weight.data_ptr()
    attn = model.layers[0].self_attn
    assert attn.q_proj.bias.abs().sum() > 0 and attn.o_proj.bias is None
    assert cfg.num_parameters() == sum(p.numel() for p in hf_model.parameters())
    ids = torch.randint(0, cfg.vocab_size, (2, 40), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, :7] = 0  # left padding
    with torch.no_grad():
        torch.testing.assert_close(model(ids), hf_model(ids).logits, atol=TOL, rtol=0)
        ours = model(ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0))
        theirs = hf_model(ids, attention_mask=mask).logits
        torch.testing.assert_close(ours[:, 7:], theirs[:, 7:], atol=TOL, rtol=0)


def test_greedy_generation_equals_transformers_dynamic_and_static(gen, hf_model) -> None:
    """Left-padded batches, the dynamic KV-cache path and the static (CUDA-graph) step in eager mode."""
    tok = gen.tokenizer
    params = SamplingParams(max_new_tokens=12)
    dynamic = gen.generate(PROMPTS, params)
    static = InfirGenerator(gen.model, tok, eos_ids=gen.eos_ids, decode="static").generate(PROMPTS, params)
    eos = sorted(gen.eos_ids)
    with torch.no_grad():
        for prompt, ours, graphable in zip(PROMPTS, dynamic, static, strict=True):
            ids = torch.tensor([tok.encode(prompt, add_special_tokens=False)])
            out = hf_model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False,
                                    eos_token_id=eos, pad_token_id=eos[0])[0, ids.shape[1]:].tolist()
            out = out[: next((i for i, t in enumerate(out) if t in gen.eos_ids), len(out))]
            assert ours.token_ids == out and graphable.token_ids == out
    assert len({tuple(c.token_ids) for c in dynamic}) > 1
    assert tok.bos_token_id is None and dynamic[0].prompt_tokens == len(tok.encode(PROMPTS[0]))  # no BOS added
    assert {tok.convert_tokens_to_ids("<|endoftext|>"), tok.convert_tokens_to_ids("<|im_end|>")} <= gen.eos_ids


def test_infir_serve_prompt_logprobs_equal_transformers(qwen2_dir, hf_model) -> None:
    """The app `infir serve` runs, on a real loopback port (the CLI itself is tested on Llama in tests/serve)."""
    import httpx

    from infir.serve.config import ServerConfig
    from infir.serve.runner import BackgroundServer

    prompt = "What is 12 plus 30? The answer is 42."
    with BackgroundServer(qwen2_dir, config=ServerConfig(model_name="qwen2")) as server:
        body = {"model": "qwen2", "prompt": prompt, "max_tokens": 0, "echo": True, "logprobs": 1, "temperature": 0}
        choice = httpx.post(server.url + "/completions", json=body, timeout=60).json()["choices"][0]
        chat = httpx.post(server.url + "/chat/completions", timeout=60, json={
            "model": "qwen2", "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 3,
            "temperature": 0}).json()
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(qwen2_dir)
    ids = tok(prompt)["input_ids"]  # Qwen2: no BOS
    with torch.no_grad():
        logp = torch.log_softmax(hf_model(torch.tensor([ids])).logits[0].float(), -1)
    expected = [float(logp[i - 1, ids[i]]) for i in range(1, len(ids))]
    got = choice["logprobs"]["token_logprobs"]
    assert got[0] is None and len(got) == len(ids)
    np.testing.assert_allclose(got[1:], expected, atol=1e-4, rtol=0)
    assert chat["choices"][0]["message"]["role"] == "assistant" and chat["usage"]["prompt_tokens"] > 10


def test_quantized_serving_keeps_the_biases(qwen2_dir) -> None:
    from infir.serve.quantize import quantize_model

    model = load_model(qwen2_dir)
    ids = torch.randint(0, model.config.vocab_size, (1, 24), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        before = model(ids)
        quantize_model(model, "int8")
        after = model(ids)
    assert model.layers[0].self_attn.q_proj.bias is not None
    assert (after - before).abs().mean() < 0.05 * before.abs().mean()


def test_hf_export_round_trips_with_equal_logits_and_chatml(qwen2_dir, tmp_path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from infir.model.chat_template import render_chatml
    from infir.serve.export import export_hf

    out = export_hf(qwen2_dir, tmp_path / "hf")
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model_type"] == "qwen2" and cfg["architectures"] == ["Qwen2ForCausalLM"]
    assert cfg["tie_word_embeddings"] is False and "head_dim" not in cfg
    theirs = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    ours, again = load_model(qwen2_dir), load_model(out)
    ids = torch.randint(0, ours.config.vocab_size, (2, 17), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(theirs(ids).logits, ours(ids), atol=TOL, rtol=0)
        torch.testing.assert_close(again(ids), ours(ids), atol=0, rtol=0)
    messages = [{"role": "user", "content": "Hello!"}]
    rendered = AutoTokenizer.from_pretrained(out).apply_chat_template(messages, tokenize=False,
                                                                       add_generation_prompt=True)
    assert rendered == render_chatml(messages, add_generation_prompt=True)
    assert rendered.endswith("<|im_end|>\n<|im_start|>assistant\n")
    gen_cfg = json.loads((out / "generation_config.json").read_text())
    assert set(gen_cfg["eos_token_id"]) == {AutoTokenizer.from_pretrained(out).convert_tokens_to_ids(t)
                                            for t in ("<|endoftext|>", "<|im_end|>")}


@pytest.mark.parametrize("quant", ["f32", "q8_0"])
def test_gguf_export_has_llama_cpp_qwen2_names_and_metadata(qwen2_dir, tmp_path, quant) -> None:
    import gguf

    from infir.model.tokenizer import load_tokenizer
    from infir.serve.export import export_gguf

    path = export_gguf(qwen2_dir, tmp_path / f"q-{quant}.gguf", quant=quant)
    reader = gguf.GGUFReader(path)

    def field(key):
        return reader.fields[key].contents()

    model = load_model(qwen2_dir)
    cfg, tok = model.config, load_tokenizer(qwen2_dir)
    assert field("general.architecture") == "qwen2"
    expected = {"qwen2.block_count": cfg.num_hidden_layers, "qwen2.context_length": cfg.max_position_embeddings,
                "qwen2.embedding_length": cfg.hidden_size, "qwen2.feed_forward_length": cfg.intermediate_size,
                "qwen2.attention.head_count": cfg.num_attention_heads,
                "qwen2.attention.head_count_kv": cfg.num_key_value_heads}
    assert {k: field(k) for k in expected} == expected
    assert field("qwen2.rope.freq_base") == pytest.approx(1e6)
    assert field("qwen2.attention.layer_norm_rms_epsilon") == pytest.approx(1e-6)
    assert not any(k.startswith("llama.") for k in reader.fields)
    assert "qwen2.rope.dimension_count" not in reader.fields  # llama.cpp derives it (head_dim = n_embd / n_head)
    assert field("tokenizer.ggml.model") == "gpt2" and field("tokenizer.ggml.pre") == "qwen2"
    tokens, types = field("tokenizer.ggml.tokens"), field("tokenizer.ggml.token_type")
    assert len(tokens) == cfg.vocab_size and tokens[: len(tok)] == tok.convert_ids_to_tokens(list(range(len(tok))))
    assert tokens[-1] == f"[PAD{cfg.vocab_size - 1}]" and types[-1] == gguf.TokenType.UNUSED
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert types[im_end] == gguf.TokenType.CONTROL
    assert types[tok.convert_tokens_to_ids("<tool_call>")] == gguf.TokenType.USER_DEFINED  # added, not special
    assert types[tok.convert_tokens_to_ids("<|fim_prefix|>")] == gguf.TokenType.CONTROL  # looks special
    assert field("tokenizer.ggml.eos_token_id") == tok.convert_tokens_to_ids("<|endoftext|>")
    assert field("tokenizer.ggml.add_bos_token") is False  # Qwen2 prepends nothing
    assert field("tokenizer.ggml.eot_token_id") == im_end
    assert "<|im_start|>" in field("tokenizer.chat_template") and len(field("tokenizer.ggml.merges")) > 0

    tensors = {t.name: t for t in reader.tensors}
    per_layer = ("attn_norm.weight", "attn_q.weight", "attn_q.bias", "attn_k.weight", "attn_k.bias", "attn_v.weight",
                 "attn_v.bias", "attn_output.weight", "ffn_norm.weight", "ffn_gate.weight", "ffn_up.weight",
                 "ffn_down.weight")
    assert set(tensors) == {"token_embd.weight", "output_norm.weight", "output.weight"} | {
        f"blk.{i}.{n}" for i in range(cfg.num_hidden_layers) for n in per_layer}  # untied: output.weight present

    def read(name):
        t = tensors[name]
        return torch.from_numpy(np.asarray(gguf.quants.dequantize(t.data, t.tensor_type)).astype(np.float32))

    state = model.state_dict()
    atol = 1e-6 if quant == "f32" else 0.8 / 127  # q8_0: half a step of |w|max/127 (weights ~N(0, 0.2))
    # no q/k permutation for qwen2: llama.cpp's qwen2 graph rotates halves (NEOX), like HF
    for hf_name, name in (("model.layers.1.self_attn.q_proj.weight", "blk.1.attn_q.weight"),
                          ("model.layers.0.self_attn.k_proj.weight", "blk.0.attn_k.weight"),
                          ("model.layers.0.self_attn.k_proj.bias", "blk.0.attn_k.bias"),
                          ("model.layers.1.self_attn.v_proj.bias", "blk.1.attn_v.bias"),
                          ("lm_head.weight", "output.weight")):
        torch.testing.assert_close(read(name).reshape(state[hf_name].shape), state[hf_name], atol=atol, rtol=0)
    assert tensors["blk.0.attn_q.bias"].tensor_type == gguf.GGMLQuantizationType.F32  # 1-D tensors stay f32


def test_short_sft_run_lowers_the_loss_and_keeps_chatml(qwen2_dir, tmp_path) -> None:
    from infir.sft.config import SFTConfig
    from infir.sft.train import run_sft

    rows = [{"messages": [{"role": "user", "content": f"What is {a} plus {b}?"},
                          {"role": "assistant", "content": f"{a} plus {b} is {a + b}."}]}
            for a in range(12) for b in range(6)]
    data = tmp_path / "chats.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = SFTConfig(epochs=2, global_batch_size=8, micro_batch_size=8, max_length=96, heldout_fraction=0.15,
                    heldout_max=10, optimizer={"lr": 3e-3}, schedule={"warmup_ratio": 0.1},
                    checkpoint={"interval": 1000}, runtime={"dtype": "fp32"})
    result = run_sft(cfg, base_model=qwen2_dir, data=[data], output=tmp_path / "sft")
    assert result["heldout_assistant_loss_after"] < result["heldout_assistant_loss_before"] - 0.5
    tuned = load_model(tmp_path / "sft" / "model")
    assert tuned.config.model_type == "qwen2" and tuned.layers[0].self_attn.q_proj.bias is not None
    assert tuned.config.tie_word_embeddings is False
    from transformers import AutoTokenizer

    from infir.model.chat_template import render_chatml

    messages = [{"role": "user", "content": "What is 2 plus 3?"}]  # the ChatML template travelled with the model
    assert AutoTokenizer.from_pretrained(tmp_path / "sft" / "model").apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True) == render_chatml(messages, add_generation_prompt=True)


def test_pretrain_from_preset_and_continue_from_a_qwen2_folder(qwen2_dir, tmp_path) -> None:
    from infir.data.tokens import write_token_shards
    from infir.model.tokenizer import load_tokenizer, save_tokenizer
    from infir.train.config import TrainConfig
    from infir.train.pretrain import run_pretrain

    tok = load_tokenizer(qwen2_dir)
    tok_dir = save_tokenizer(tok, tmp_path / "tok")
    write_token_shards(({"text": t} for t in TEXTS), tok, tmp_path / "data" / "web", shard_tokens=4000)
    common = dict(seq_len=64, micro_batch_size=2, global_batch_size=2, max_steps=4, max_tokens=None,
                  optimizer={"lr": 3e-3}, checkpoint={"interval": 0}, logging={"tensorboard": False},
                  runtime={"dtype": "fp32"}, eval_interval=0)
    fresh = run_pretrain(TrainConfig(model="qwen2-micro", **common), tmp_path / "data", tmp_path / "pre", tok_dir)
    scratch = load_model(tmp_path / "pre" / "model")
    assert scratch.config.model_type == "qwen2" and scratch.config.bos_token_id is None
    assert scratch.config.eos_token_id == tok.convert_tokens_to_ids("<|endoftext|>")
    assert scratch.config.vocab_size >= len(tok) and fresh["steps"] == 4
    cont = run_pretrain(TrainConfig(init_from=str(qwen2_dir), **common), tmp_path / "data", tmp_path / "cont", tok_dir)
    continued, base = load_model(tmp_path / "cont" / "model"), load_model(qwen2_dir)
    assert continued.config == base.config and cont["final_loss"] == cont["final_loss"]
    bias_moved = (continued.layers[0].self_attn.q_proj.bias - base.layers[0].self_attn.q_proj.bias).abs().max()
    assert bias_moved > 0  # the biases are trained too


def test_real_qwen_vocabulary_gives_qwen25_ids(shared_data) -> None:
    """qwen.tiktoken (the Qwen2/Qwen2.5 vocabulary) through the qwen2 tokenizer family: the known ids."""
    from infir.model.tokenizer import load_tokenizer

    path = shared_data / "tokenizers" / "qwen" / "qwen.tiktoken"
    if not path.exists():
        pytest.skip("qwen.tiktoken not staged")
    tok = load_tokenizer(path)
    assert len(tok) == 151665 and tok.bos_token_id is None
    assert tok.encode("Hello world") == [9707, 1879]  # no BOS, Qwen2/2.5's ids
    assert tok.encode("2024", add_special_tokens=False) == [17, 15, 17, 19]  # Qwen splits digits one by one
    specials = {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645, "<tool_call>": 151657,
                "<|file_sep|>": 151664}
    assert {t: tok.convert_tokens_to_ids(t) for t in specials} == specials
    text = "Über 12345 ünïcode 我想在apple工作"
    assert tok.decode(tok.encode(text)) == text
    chat = tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
    assert chat.startswith("<|im_start|>system\nYou are Qwen") and chat.endswith("<|im_start|>assistant\n")


def test_eval_runs_on_a_qwen2_folder_in_base_and_chat_mode(qwen2_dir, shared_data, tmp_path) -> None:
    from infir.eval.runner import run_eval

    for mode in ("base", "chat"):
        summary = run_eval(qwen2_dir, ["gsm8k"], shared_data, tmp_path / mode, limit=2, mode=mode,
                           max_new_tokens=4)
        assert summary["gsm8k"]["n"] == 2
        rows = [json.loads(x) for x in (tmp_path / mode / "gsm8k" / "samples.jsonl").read_text().splitlines()]
        prompt = rows[0]["prompt"]  # base: few-shot text; chat: messages (rendered with the ChatML template)
        assert prompt.startswith("Question:") if mode == "base" else prompt[-1]["role"] == "user"
