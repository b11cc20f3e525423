"""A short SFT run on the real SFT seeds lowers the held-out assistant-token loss and leaves an HF folder
whose tokenizer renders chats exactly as infir does."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest
import torch
import yaml

from infir.data.chats import read_conversations
from infir.model.chat_template import render_chat
from infir.model.hf_io import load_model, save_model
from infir.model.llama import PRESETS, Llama
from infir.model.tokenizer import train_bpe_tokenizer
from infir.sft.config import SFTConfig
from infir.sft.train import run_sft
from infir.utils.config import ConfigError


@pytest.fixture(scope="module")
def base_model(tmp_path_factory, shared_data):
    seeds = read_conversations(shared_data / "sft/self_instruct_seed/seed_tasks.jsonl").conversations
    tok = train_bpe_tokenizer((m["content"] for c in seeds for m in c.messages), vocab_size=512)
    torch.manual_seed(0)
    cfg = dataclasses.replace(PRESETS["micro"], vocab_size=len(tok), max_position_embeddings=512,
                              bos_token_id=tok.bos_token_id, eos_token_id=tok.convert_tokens_to_ids("<|end_of_text|>"))
    path = tmp_path_factory.mktemp("base") / "model"
    save_model(Llama(cfg), path, tokenizer=tok)
    return path


def test_short_sft_run_lowers_heldout_assistant_loss(base_model, shared_data, tmp_path):
    torch.manual_seed(0)
    cfg = SFTConfig(epochs=3, global_batch_size=8, micro_batch_size=4, max_length=256, heldout_fraction=0.15,
                    heldout_max=32, optimizer={"lr": 5e-3}, schedule={"warmup_ratio": 0.1},
                    checkpoint={"interval": 1000}, runtime={"dtype": "fp32"})
    data = [shared_data / "sft/self_instruct_seed/seed_tasks.jsonl"]
    out = tmp_path / "sft"
    result = run_sft(cfg, base_model=base_model, data=data, output=out)
    assert result["heldout"] >= 20 and result["samples"] >= 130
    assert result["heldout_assistant_loss_after"] < result["heldout_assistant_loss_before"] - 0.5
    assert result["steps"] == result["total_steps"] == 3 * result["steps_per_epoch"]
    stats = json.loads((out / "data/stats.json").read_text())
    assert stats["tokenize"]["truncated"] == result["truncated"]
    assert (out / "data/quarantine.jsonl").exists()
    # The saved folder: our loader, transformers' tokenizer with the same chat template and ids.
    from transformers import AutoTokenizer

    model = load_model(out / "model")
    tok = AutoTokenizer.from_pretrained(out / "model")
    msgs = [{"role": "user", "content": "Give me a synonym for happy."}]
    text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert text == render_chat(msgs, add_generation_prompt=True)
    gen = json.loads((out / "model/generation_config.json").read_text())
    assert tok.convert_tokens_to_ids("<|eot_id|>") in gen["eos_token_id"]
    assert model.config.vocab_size == len(tok)
    # The CLI on the same output resumes from the final checkpoint and reuses the tokenized data.
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"name": "t", "sft": cfg.model_dump(mode="json")}))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "infir.cli", "train", "sft", "--recipe", str(recipe),
                           "--base-model", str(base_model), "--data", str(data[0]), "--output", str(out)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    printed = json.loads(proc.stdout.strip().splitlines()[-1])
    assert printed["steps"] == result["total_steps"] and printed["samples"] == result["samples"]
    assert "reusing tokenized SFT data" in proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["resumed_from"] == result["total_steps"]


def test_sft_refuses_to_train_on_nothing(base_model, tmp_path):
    data = tmp_path / "bad.jsonl"
    data.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n" + "{not json\n")
    with pytest.raises(ValueError, match="no usable training sample") as e:
        run_sft(SFTConfig(max_length=64), base_model=base_model, data=[data], output=tmp_path / "o")
    assert "'quarantined': 2" in str(e.value) and not (tmp_path / "o" / "model").exists()


def test_cli_errors_and_long_cot_config(tmp_path):
    from infir.sft.commands import load_sft_config

    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"name": "t", "sft": {"optimizer": {"lr": 1e-5}, "max_length": 4096}}))
    cfg = load_sft_config(recipe, "sft", long_cot=True, overrides=["selection.s1_subset=10"])
    assert (cfg.max_length, cfg.optimizer.lr, cfg.selection.s1_subset) == (16384, 1e-5, 10)
    assert load_sft_config(recipe, "sft", long_cot=False, overrides=[]).max_length == 4096
    from typer.testing import CliRunner

    from infir.cli import app

    args = ["train", "sft", "--recipe", str(recipe), "--base-model", str(tmp_path), "--output", str(tmp_path / "o")]
    missing = CliRunner().invoke(app, [*args, "--data", str(tmp_path / "nope.json")])
    assert missing.exit_code == 2 and "not found" in missing.output
    assert CliRunner().invoke(app, args).exit_code == 2  # no data at all
    bad = CliRunner().invoke(app, [*args, "--data", str(recipe), "--set", "optimizer.lr=fast"])
    assert isinstance(bad.exception, ConfigError) and "optimizer.lr" in str(bad.exception)


def _losses(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"], r["grad_norm"]) for r in rows if "loss" in r]


def test_two_ranks_train_exactly_like_one(base_model, shared_data, tmp_path):
    """Token-level normalisation over micro-batches and ranks: FSDP on 2 ranks (gloo) = 1 process."""
    cfg = SFTConfig(epochs=1, max_steps=3, global_batch_size=16, micro_batch_size=2, max_length=128,
                    heldout_fraction=0.0, optimizer={"lr": 5e-3}, checkpoint={"interval": 1000},
                    runtime={"dtype": "fp32"})
    data = shared_data / "sft/self_instruct_seed/seed_tasks.jsonl"
    run_sft(cfg, base_model=base_model, data=[data], output=tmp_path / "one")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"name": "t", "sft": cfg.model_dump(mode="json")}))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "-m", "infir.cli", "train", "sft", "--recipe", str(recipe), "--base-model",
                           str(base_model), "--data", str(data), "--output", str(tmp_path / "two")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one, two = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert len(one) == len(two) == 3
    for (s1, l1, g1), (s2, l2, g2) in zip(one, two, strict=True):
        assert s1 == s2 and l1 == pytest.approx(l2, rel=1e-5) and g1 == pytest.approx(g2, rel=1e-4)
