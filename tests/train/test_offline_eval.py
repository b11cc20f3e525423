"""Offline evaluations for data mixing (paper §2.3): meaningless-text filter, answer NLL, eq. 2."""

from __future__ import annotations

import json

import torch
import torch.nn.functional as F

from infir.model.hf_io import save_model
from infir.model.llama import PRESETS, Llama
from infir.train.config import OfflineEvalConfig
from infir.train.distributed import DistEnv
from infir.train.loop import CausalLMLoss
from infir.train.offline_eval import OfflineEvaluator, select_meaningful

ENV = DistEnv(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))


def test_a_text_is_dropped_only_when_it_is_in_the_bottom_of_every_ranking() -> None:
    ranking_a = [1.0, 9.0, 2.0, 8.0, 3.0, 4.0, 5.0, 6.0, 2.5, 1.5]  # worst two: 1, 3
    ranking_b = [1.0, 9.0, 9.5, 2.0, 3.0, 4.0, 5.0, 6.0, 2.5, 1.5]  # worst two: 2, 1
    assert select_meaningful([ranking_a, ranking_b], 0.2) == [i != 1 for i in range(10)]
    assert select_meaningful([ranking_a], 0.2) == [i not in (1, 3) for i in range(10)]


def _nll_per_token(model: Llama, ids: list[int]) -> float:
    logits = model(torch.tensor([ids[:-1]]))[0]
    return float(F.cross_entropy(logits, torch.tensor(ids[1:])))


def test_evaluator_filters_with_reference_model_and_normalises_choices(tmp_path, tokenizer_dir, make_texts) -> None:
    from infir.model.tokenizer import load_tokenizer

    tok = load_tokenizer(tokenizer_dir)
    torch.manual_seed(0)
    reference = Llama(PRESETS["micro"]).eval()
    save_model(reference, tmp_path / "ref", tokenizer=tok)  # a reference scores with its own tokenizer
    texts = make_texts(10, 7)
    (tmp_path / "web.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    mc = [{"prompt": "the cat", "options": [" sat", " ran to the park", " two"], "answer_index": 1}]
    (tmp_path / "mc.jsonl").write_text(json.dumps(mc[0]) + "\n")
    cfg = OfflineEvalConfig(web_val=str(tmp_path / "web.jsonl"), reference_models=[str(tmp_path / "ref")],
                            choice_tasks=[str(tmp_path / "mc.jsonl")])
    ev = OfflineEvaluator.build(cfg, tok, tmp_path / "eval", ENV)

    with torch.no_grad():
        ids = [[tok.bos_token_id, *tok(t, add_special_tokens=False)["input_ids"]] for t in texts]
        # ranked by NLL per UTF-8 byte of the text (references may tokenize differently)
        ref_nll = [_nll_per_token(reference, x) * (len(x) - 1) / len(t.encode()) for x, t in zip(ids, texts, strict=True)]
        worst = sorted(range(10), key=lambda i: -ref_nll[i])[:2]
        assert [w[1] for w in ev.web] == [x for i, x in enumerate(ids) if i not in worst]
        assert json.loads((tmp_path / "eval" / "web_val_selection.json").read_text())["kept"] == 8

        torch.manual_seed(1)
        model = Llama(PRESETS["micro"]).eval()
        results = ev(CausalLMLoss(model), step=1)
        kept = [x for i, x in enumerate(ids) if i not in worst]
        total = sum(_nll_per_token(model, x) * (len(x) - 1) for x in kept)
        assert abs(results["web_nll"] - total / sum(len(x) - 1 for x in kept)) < 1e-4
        context = [tok.bos_token_id, *tok("the cat", add_special_tokens=False)["input_ids"]]
        scores = []
        for option in mc[0]["options"]:
            cont = tok(option, add_special_tokens=False)["input_ids"]
            logp = torch.log_softmax(model(torch.tensor([context + cont]))[0], -1)
            scores.append(sum(float(logp[len(context) - 1 + j, c]) for j, c in enumerate(cont)))
        expected = torch.softmax(torch.tensor(scores), 0)[1]
    assert abs(results["mc/choice_prob"] - float(expected)) < 1e-4
    assert results["mc/choice_acc"] == float(max(range(3), key=lambda i: scores[i]) == 1)
