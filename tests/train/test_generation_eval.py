"""The anneal phase's few-shot generation hook runs a saved model through the eval task in base mode,
with exactly the prompts of the base-model evaluation (Table 1)."""

from __future__ import annotations

import json

import torch

from infir.eval.tasks import get_task
from infir.model.hf_io import save_model
from infir.model.llama import PRESETS, Llama
from infir.train.generation_eval import task_generation_eval


def test_generation_eval_uses_the_base_model_eval_prompts(tmp_path, tokenizer_dir) -> None:
    from infir.model.tokenizer import load_tokenizer

    torch.manual_seed(0)
    save_model(Llama(PRESETS["micro"]), tmp_path / "m", tokenizer=load_tokenizer(tokenizer_dir))
    data = tmp_path / "bench"
    (data / "gsm8k").mkdir(parents=True)
    rows = [{"question": f"one plus {i}", "answer": f"one plus {i} is {i + 1}\n#### {i + 1}"} for i in range(10)]
    for split in ("train", "test"):
        (data / "gsm8k" / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    # by name (with the benchmarks folder) and by the task's test file
    for ref, ddir in (("gsm8k", data), (str(data / "gsm8k" / "test.jsonl"), None)):
        out = tmp_path / f"out-{ddir is None}"
        results = task_generation_eval(tmp_path / "m", [ref], limit=2, out_dir=out, data_dir=ddir, max_new_tokens=4)
        assert list(results) == ["gsm8k/gen_acc"] and 0.0 <= results["gsm8k/gen_acc"] <= 1.0
        prompts = [json.loads(line)["prompt"] for line in (out / "gsm8k" / "samples.jsonl").read_text().splitlines()]
        assert prompts == [s.prompt for s in get_task("gsm8k", "base").load(data, "base", 2)]
