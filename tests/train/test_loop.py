"""The training loop: token-level normalisation over accumulated micro-batches, and a real pretrain run."""

from __future__ import annotations

import copy
import dataclasses
import json

import torch

from infir.model.hf_io import load_model
from infir.model.llama import PRESETS, Llama
from infir.train.config import OfflineEvalConfig, TrainConfig
from infir.train.loop import train
from infir.train.loss import IGNORE_INDEX
from infir.train.pretrain import run_pretrain

MICRO = dataclasses.replace(PRESETS["micro"], vocab_size=320)


def _batch(rows: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    t = rows.shape[1]
    return {"input_ids": rows, "labels": labels, "position_ids": torch.arange(t).expand_as(rows),
            "document_ids": torch.zeros_like(rows)}


def test_accumulated_micro_batches_equal_one_big_batch(tmp_path) -> None:
    torch.manual_seed(0)
    rows = torch.randint(0, 320, (2, 24))
    labels = torch.randint(0, 320, (2, 24))
    labels[0, :20] = IGNORE_INDEX  # row 0 has 4 label tokens, row 1 has 24: a per-micro-batch mean would differ
    model = Llama(MICRO)
    twin = copy.deepcopy(model)
    # eps >> |grad| makes the first AdamW update ~ lr * grad, so parameters compare gradients
    cfg = TrainConfig(model="micro", seq_len=24, micro_batch_size=1, global_batch_size=2, max_steps=1,
                      optimizer={"lr": 1.0, "eps": 1.0, "weight_decay": 0.0, "grad_clip": 0.0},
                      schedule={"kind": "constant", "warmup_steps": 0}, logging={"tensorboard": False})
    before = [p.detach().clone() for p in model.parameters()]
    accumulated, s1 = train(model, [_batch(rows[:1], labels[:1]), _batch(rows[1:], labels[1:])], cfg, tmp_path / "a")
    cfg_big = cfg.model_copy(update={"micro_batch_size": 2})
    big, s2 = train(twin, [_batch(rows, labels)], cfg_big, tmp_path / "b")
    assert abs(s1["final_loss"] - s2["final_loss"]) < 1e-6
    moved = 0.0
    for (name, p), q, p0 in zip(accumulated.model.named_parameters(), big.model.parameters(), before, strict=True):
        assert torch.allclose(p, q, atol=1e-7), name
        moved = max(moved, float((p - p0).detach().abs().max()))
    assert moved > 1e-3  # the step did change the weights


def test_pretrain_learns_logs_evaluates_and_saves_a_model(tmp_path, token_data, tokenizer_dir) -> None:
    answers = tmp_path / "qa.jsonl"
    answers.write_text("".join(json.dumps({"question": f"the cat sat {i}", "answer": "on a mat."}) + "\n"
                               for i in range(4)))
    choices = tmp_path / "mc.jsonl"
    choices.write_text("".join(json.dumps({"prompt": "two dogs", "options": [" ran to the park", " zzq xx"],
                                           "answer_index": 0}) + "\n" for _ in range(2)))
    web = tmp_path / "web.jsonl"
    web.write_text("".join(json.dumps({"text": t}) + "\n" for t in ["the cat sat on a mat."] * 3))
    cfg = TrainConfig(model="micro", seq_len=64, micro_batch_size=4, global_batch_size=8, max_steps=12,
                      optimizer={"lr": 5e-3}, schedule={"kind": "cosine", "warmup_steps": 2},
                      checkpoint={"interval": 6, "keep": 1}, eval_interval=6, logging={"tensorboard": True},
                      eval=OfflineEvalConfig(web_val=str(web), answer_tasks=[str(answers)],
                                             choice_tasks=[str(choices)]))
    summary = run_pretrain(cfg, token_data, tmp_path / "run", tokenizer_dir)
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert len(losses) == 12 and losses[-1] < losses[0] - 0.5
    assert summary["final_loss"] == losses[-1] and summary["tokens"] == 12 * 8 * 64
    evals = [r for r in rows if "eval/web_nll" in r]
    assert [r["step"] for r in evals] == [6, 12]
    assert evals[1]["eval/web_nll"] < evals[0]["eval/web_nll"]
    assert 0 < evals[1]["eval/mc/choice_prob"] < 1 and "eval/qa/answer_nll" in evals[1]
    assert [p.name for p in (tmp_path / "run" / "checkpoints").iterdir()] == ["step_00000012"]  # keep-last-1
    assert any((tmp_path / "run" / "tensorboard").iterdir())
    model = load_model(tmp_path / "run" / "model")
    assert (tmp_path / "run" / "model" / "tokenizer.json").exists() and model.config.vocab_size == 512

    # anneal: the same function from the pretrained model, lr decaying to the floor, loss stays where it was
    anneal = cfg.model_copy(update={"schedule": cfg.schedule.model_copy(update={"kind": "decay", "min_lr_ratio": 0.0}),
                                    "max_steps": 4, "eval": OfflineEvalConfig()})
    done = run_pretrain(anneal, token_data, tmp_path / "anneal", tokenizer_dir, init_from=tmp_path / "run" / "model")
    rows = [json.loads(x) for x in (tmp_path / "anneal" / "metrics.jsonl").read_text().splitlines()]
    lrs = [r["lr"] for r in rows]
    assert lrs == sorted(lrs, reverse=True) and lrs[-1] == 0.0
    assert rows[0]["loss"] < losses[0] - 0.5 and done["final_loss"] < losses[0] - 0.5


def test_activation_checkpointing_gives_the_same_step(tmp_path) -> None:
    torch.manual_seed(0)
    rows = torch.randint(0, 320, (2, 16))
    model = Llama(MICRO)
    twin = copy.deepcopy(model)
    cfg = TrainConfig(model="micro", seq_len=16, micro_batch_size=2, global_batch_size=2, max_steps=2,
                      schedule={"warmup_steps": 0}, logging={"tensorboard": False}, checkpoint={"interval": 0})
    batches = [_batch(rows, rows), _batch(rows, rows)]
    plain, s1 = train(model, batches, cfg, tmp_path / "a")
    checkpointed, s2 = train(twin, batches, cfg.model_copy(update={"runtime": cfg.runtime.model_copy(update={"activation_checkpointing": True})}), tmp_path / "b")
    assert abs(s1["final_loss"] - s2["final_loss"]) < 1e-6
    state = checkpointed.state_dict()
    assert set(state) == set(plain.state_dict())  # wrapper prefixes do not leak into names
