"""§2.3.1's reference models with their own tokenizers: a Qwen2 reference and a Llama reference, neither sharing the
trained model's tokenizer, each score texts with their own vocabulary and rank by NLL per UTF-8 byte."""

from __future__ import annotations

import json
import math

import pytest
import torch

from infir.model import registry
from infir.model.hf_io import save_model
from infir.train.config import OfflineEvalConfig
from infir.train.distributed import DistEnv
from infir.train.offline_eval import (
    OfflineEvaluator,
    reference_nll_per_byte,
    reference_tokens,
    select_meaningful,
)

ENV = DistEnv(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
TEXTS = ["The cat sat on the mat while 12345 dogs ran to the park.",
         "Über den Wolken muss die Freiheit wohl grenzenlos sein — 1990.",
         "def f(x):\n    return x ** 2  # squares 3141592653",
         "zzqx vvkp 00000000 qqqq wwww jjjj",
         "A bird sang about numbers like one two three four five.",
         "我想在apple工作1314151天",
         "the the the the the the the the the the",
         "Proof: by induction on n, the lemma holds for every n >= 1."]
# web texts: the above plus two no tokenizer has seen (byte-level pieces: hard for every reference)
WEB = [*TEXTS, "ŧŋđ ħĸł ŵẍ ÿþ ŋđ ŧŋ", "ʘʬʭ ʮʯ ʰʱ ʲʳ ʘʬ"]


def _reference(tmp_path, name: str, family: str, preset: str, vocab: int, seed: int):
    from infir.model.tokenizer import train_bpe_tokenizer

    corpus = [t.upper() if seed % 2 else t for t in TEXTS * 20] + ["plain words and more words"] * 20
    tok = train_bpe_tokenizer(corpus, vocab_size=vocab, family=family)
    torch.manual_seed(seed)
    model = registry.build_model(registry.preset(preset, vocab_size=len(tok) + 3))
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.3)
    return save_model(model, tmp_path / name, tokenizer=tok), tok


@pytest.fixture()
def references(tmp_path):
    qwen = _reference(tmp_path, "qwen-ref", "qwen2", "qwen2-micro", 350, seed=1)
    llama = _reference(tmp_path, "llama-ref", "llama3", "micro", 300, seed=2)
    return qwen, llama


def test_each_reference_scores_with_its_own_tokenizer_per_utf8_byte(references) -> None:
    from transformers import AutoModelForCausalLM

    (qwen_dir, qwen_tok), (llama_dir, llama_tok) = references
    assert [qwen_tok.encode(t) for t in TEXTS] != [llama_tok.encode(t) for t in TEXTS]  # different tokenizers
    for path, tok, prefix in ((qwen_dir, qwen_tok, "<|endoftext|>"), (llama_dir, llama_tok, "<|begin_of_text|>")):
        ours = reference_nll_per_byte(path, TEXTS, 1024, ENV)
        hf = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        for text, got in zip(TEXTS, ours, strict=True):
            # by hand, with transformers: the text's tokens after the document-start token (Qwen2 has no BOS)
            ids = [tok.convert_tokens_to_ids(prefix), *tok(text, add_special_tokens=False)["input_ids"]]
            with torch.no_grad():
                logp = torch.log_softmax(hf(torch.tensor([ids])).logits[0, :-1], -1)
            nll = -float(logp.gather(-1, torch.tensor(ids[1:])[:, None]).sum())
            assert got == pytest.approx(nll / len(text.encode("utf-8")), rel=1e-4)


def test_truncated_texts_count_only_the_bytes_they_keep(references) -> None:
    (_, qwen_tok), _ = references
    text = TEXTS[1]
    ids, size = reference_tokens(qwen_tok, text, max_len=6)
    assert len(ids) == 6 and ids[0] == qwen_tok.convert_tokens_to_ids("<|endoftext|>")
    assert size == len(qwen_tok.decode(ids[1:]).encode("utf-8")) < len(text.encode("utf-8"))
    assert reference_tokens(qwen_tok, text, max_len=1000)[1] == len(text.encode("utf-8"))


def test_offline_eval_drops_texts_worst_under_both_references(references, tmp_path, tokenizer_dir) -> None:
    """The trained model's tokenizer (tests/train's) differs from both references'; the selection intersects
    the references' per-byte rankings."""
    from infir.model.tokenizer import load_tokenizer

    (qwen_dir, _), (llama_dir, _) = references
    (tmp_path / "web.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in WEB))
    cfg = OfflineEvalConfig(web_val=str(tmp_path / "web.jsonl"), reference_models=[str(qwen_dir), str(llama_dir)],
                            discard_fraction=0.2)
    ev = OfflineEvaluator.build(cfg, load_tokenizer(tokenizer_dir), tmp_path / "eval", ENV)
    rankings = [reference_nll_per_byte(p, WEB, cfg.max_len, ENV) for p in (qwen_dir, llama_dir)]
    keep = select_meaningful(rankings, 0.2)
    assert len(ev.web) == sum(keep) < len(WEB)
    report = json.loads((tmp_path / "eval" / "web_val_selection.json").read_text())
    assert report["kept"] == sum(keep) and "per UTF-8 byte" in report["ranked_by"]
    assert report["dropped_examples"] == [t for t, k in zip(WEB, keep, strict=True) if not k]
    assert all(math.isfinite(v) and v > 0 for v in report["reference_mean_nll_per_byte"].values())


def test_a_reference_without_tokenizer_is_refused(tmp_path) -> None:
    path = save_model(registry.build_model(registry.preset("qwen2-micro")), tmp_path / "bare")
    with pytest.raises(FileNotFoundError, match="its own tokenizer"):
        reference_nll_per_byte(path, TEXTS, 64, ENV)
