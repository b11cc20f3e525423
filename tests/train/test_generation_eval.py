"""The anneal phase's few-shot generation hook runs a saved model through infir.eval and grades answers."""

from __future__ import annotations

import json

import torch

from infir.model.hf_io import save_model
from infir.model.llama import PRESETS, Llama
from infir.train.generation_eval import few_shot_generation_eval, few_shot_prompt


def test_few_shot_generation_eval_scores_a_saved_model(tmp_path, tokenizer_dir) -> None:
    from infir.model.tokenizer import load_tokenizer

    torch.manual_seed(0)
    save_model(Llama(PRESETS["micro"]), tmp_path / "m", tokenizer=load_tokenizer(tokenizer_dir))
    task = tmp_path / "gsm8k_like.jsonl"
    rows = [{"question": f"one plus {i}", "answer": f"one plus {i} is {i + 1}\n#### {i + 1}"} for i in range(4)]
    task.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert few_shot_prompt([("q1", "a1", "1")], "q2") == "Question: q1\nAnswer: a1\n\nQuestion: q2\nAnswer:"
    results = few_shot_generation_eval(tmp_path / "m", [str(task)], limit=2, shots=2, max_new_tokens=4)
    assert list(results) == ["gsm8k_like/gen_acc"] and 0.0 <= results["gsm8k_like/gen_acc"] <= 1.0
