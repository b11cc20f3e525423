"""Offline evaluations for data mixing (paper §2.3), run at an interval during training.

Pretraining (recall): per-token NLL on a web validation sample from which the "meaningless" texts
were dropped (those in the bottom `discard_fraction` of every reference model's NLL ranking), the
per-token NLL of benchmark answers, and for multiple choice the softmax-normalised probability of
the correct option over all options (eq. 2, s_i = log-likelihood of option i).

Reference models may have other tokenizers than the trained model (the paper's references include Qwen2.5
models): each one scores every text with its own tokenizer, and the ranking uses its NLL per UTF-8 byte of the
text (see `reference_nll_per_byte`), so every reference ranks the same quantity whatever its vocabulary.
Annealing (precision): eval tasks generated few-shot with the base-model prompts (`generation_eval`).

Scores go through the training module itself (`module(input_ids, labels) -> (loss_sum, ce_sum)`),
so they work unchanged under FSDP (every rank runs the same items).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from infir.train.config import OfflineEvalConfig
from infir.train.distributed import DistEnv, barrier
from infir.train.generation_eval import task_generation_eval
from infir.train.loss import IGNORE_INDEX
from infir.utils.io import atomic_write_json, open_text, read_jsonl
from infir.utils.log import get_logger

log = get_logger(__name__)
Scored = tuple[list[int], list[int]]  # (context ids, continuation ids): NLL is taken on the continuation


@torch.no_grad()
def continuation_nll(module: nn.Module, items: list[Scored], device: Any) -> list[tuple[float, int]]:
    """(summed NLL of the continuation, its token count) for each item, one forward each."""
    out = []
    for context, continuation in items:
        ids = context + continuation
        labels = [IGNORE_INDEX] * (len(context) - 1) + continuation
        if not context:  # a whole text: every token but the first is scored
            labels = continuation[1:]
        inputs = torch.tensor([ids[:-1]], device=device)
        target = torch.tensor([labels], device=device)
        _, ce = module(input_ids=inputs, labels=target)
        out.append((float(ce), int((target != IGNORE_INDEX).sum())))
    return out


def select_meaningful(nll_per_token: list[list[float]], discard_fraction: float) -> list[bool]:
    """Keep a text unless it ranks in the worst `discard_fraction` (highest NLL) of every ranking."""
    n = len(nll_per_token[0]) if nll_per_token else 0
    cut = int(n * discard_fraction)
    if cut == 0:
        return [True] * n
    worst = [set(sorted(range(n), key=lambda i: -r[i])[:cut]) for r in nll_per_token]
    return [not all(i in w for w in worst) for i in range(n)]


def _encode(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _with_bos(tokenizer: Any, ids: list[int]) -> list[int]:
    bos = getattr(tokenizer, "bos_token_id", None)
    return [bos, *ids] if bos is not None else ids


def load_texts(path: Path, limit: int) -> list[str]:
    """Web texts from JSONL ({"text"}) or plain text (one document per non-empty line)."""
    texts: list[str] = []
    if ".jsonl" in path.name or ".json" in path.name:
        for row in read_jsonl(path):
            if isinstance(row.get("text"), str) and row["text"].strip():
                texts.append(row["text"])
            if len(texts) >= limit:
                break
    else:
        with open_text(path) as f:
            for line in f:
                if line.strip() and not line.strip().startswith("="):
                    texts.append(line.strip())
                if len(texts) >= limit:
                    break
    return texts


def _first(row: dict, names: tuple[str, ...], path: Path) -> Any:
    for n in names:
        if n in row:
            return row[n]
    raise ValueError(f"{path}: none of the fields {names} in a row with fields {sorted(row)}")


def _task_items(ref: str, limit: int, data_dir: str | None) -> Any:
    """The eval task's own NLL items when `ref` names a task (or its test file), else None."""
    from infir.eval.tasks import resolve_task

    resolved = resolve_task(ref, data_dir)
    if resolved is None:
        return None
    task, task_dir = resolved
    if task.nll_items is None:
        raise ValueError(f"task {task.name!r} declares no items for the offline NLL evals")
    return task.nll_items(task_dir, limit)


def load_answer_items(ref: str, limit: int, data_dir: str | None = None) -> list[tuple[str, str]]:
    """(prompt, answer) pairs: an eval task's own items, or a generic JSONL file of
    {prompt|question|problem, answer|solution|completion}."""
    items_of_task = _task_items(ref, limit, data_dir)
    if items_of_task is not None:
        return items_of_task.answers
    path = Path(ref)
    items = []
    for row in read_jsonl(path):
        items.append((str(_first(row, ("prompt", "question", "problem"), path)),
                      " " + str(_first(row, ("answer", "solution", "completion"), path)).lstrip()))
        if len(items) >= limit:
            break
    return items


def load_choice_items(ref: str, limit: int, data_dir: str | None = None) -> list[tuple[str, list[str], int]]:
    """(prompt, options, correct index): an eval task's own items, or a generic JSONL file of
    {prompt|question, options|choices, answer_index|answer}."""
    items_of_task = _task_items(ref, limit, data_dir)
    if items_of_task is not None:
        return items_of_task.choices
    path = Path(ref)
    items: list[tuple[str, list[str], int]] = []
    for row in read_jsonl(path):
        items.append((str(_first(row, ("prompt", "question"), path)), list(_first(row, ("options", "choices"), path)),
                      int(_first(row, ("answer_index", "answer"), path))))
    step = max(1, len(items) // limit) if limit else 1  # spread the limit over the file
    return items[::step][:limit]


@dataclass
class OfflineEvaluator:
    """Prepared once (texts tokenized, meaningless web texts dropped); called as evaluate(module, step)."""

    device: Any
    web: list[Scored] = field(default_factory=list)
    answers: dict[str, list[Scored]] = field(default_factory=dict)
    choices: dict[str, list[tuple[list[int], list[list[int]], int]]] = field(default_factory=dict)
    generation_tasks: list[str] = field(default_factory=list)
    generation_limit: int = 0
    out_dir: Path | None = None
    tokenizer: Any = None
    env: DistEnv | None = None
    benchmarks_dir: str | None = None

    @classmethod
    def build(cls, cfg: OfflineEvalConfig, tokenizer: Any, out_dir: Path, env: DistEnv) -> OfflineEvaluator | None:
        if not (cfg.web_val or cfg.answer_tasks or cfg.choice_tasks or cfg.generation_tasks):
            return None
        ev = cls(device=env.device, generation_tasks=list(cfg.generation_tasks),
                 generation_limit=cfg.generation_limit, out_dir=out_dir, tokenizer=tokenizer, env=env,
                 benchmarks_dir=cfg.benchmarks_dir)
        cut = cfg.max_len

        if cfg.web_val:
            texts, web = [], []
            for text in load_texts(Path(cfg.web_val), cfg.web_max_docs):
                ids = _with_bos(tokenizer, _encode(tokenizer, text))[:cut]
                if len(ids) >= 2:
                    texts.append(text)
                    web.append(([], ids))
            keep = [True] * len(web)
            rankings: dict[str, list[float]] = {}
            if cfg.reference_models:
                rankings = {m: reference_nll_per_byte(Path(m), texts, cut, env) for m in cfg.reference_models}
                keep = select_meaningful(list(rankings.values()), cfg.discard_fraction)
            ev.web = [w for w, k in zip(web, keep, strict=True) if k]
            if env.is_main:
                atomic_write_json(out_dir / "web_val_selection.json", {
                    "source": cfg.web_val, "documents": len(web), "kept": len(ev.web),
                    "reference_models": cfg.reference_models, "discard_fraction": cfg.discard_fraction,
                    "ranked_by": "reference NLL per UTF-8 byte (each reference with its own tokenizer)",
                    "reference_mean_nll_per_byte": {m: sum(r) / len(r) for m, r in rankings.items() if r},
                    "dropped_examples": [t[:200] for t, k in zip(texts, keep, strict=True) if not k][:20]})
        for task in cfg.answer_tasks:
            pairs = load_answer_items(task, cfg.max_items, cfg.benchmarks_dir)
            ev.answers[_task_name(task)] = [
                (_with_bos(tokenizer, _encode(tokenizer, p))[-cut // 2:], _encode(tokenizer, a)[: cut // 2])
                for p, a in pairs]
        for task in cfg.choice_tasks:
            items = load_choice_items(task, cfg.max_items, cfg.benchmarks_dir)
            ev.choices[_task_name(task)] = [
                (_with_bos(tokenizer, _encode(tokenizer, p))[-cut // 2:],
                 [_encode(tokenizer, o)[: cut // 2] for o in opts], answer) for p, opts, answer in items]
        log.info("offline eval: %d web texts, answer tasks %s, choice tasks %s, generation tasks %s",
                 len(ev.web), list(ev.answers), list(ev.choices), ev.generation_tasks)
        return ev

    def __call__(self, module: nn.Module, step: int) -> dict[str, float]:
        results: dict[str, float] = {}
        if self.web:
            scored = continuation_nll(module, self.web, self.device)
            results["web_nll"] = sum(s for s, _ in scored) / max(1, sum(n for _, n in scored))
        for name, items in self.answers.items():
            scored = continuation_nll(module, items, self.device)
            results[f"{name}/answer_nll"] = sum(s for s, _ in scored) / max(1, sum(n for _, n in scored))
        for name, items in self.choices.items():
            probs, correct = [], 0
            for context, options, answer in items:
                scores = torch.tensor([-s for s, _ in continuation_nll(module, [(context, o) for o in options],
                                                                        self.device)])
                p = torch.softmax(scores, 0)  # eq. 2
                probs.append(float(p[answer]))
                correct += int(int(scores.argmax()) == answer)
            results[f"{name}/choice_prob"] = sum(probs) / len(probs)
            results[f"{name}/choice_nll"] = -sum(math.log(max(p, 1e-30)) for p in probs) / len(probs)
            results[f"{name}/choice_acc"] = correct / len(probs)
        if self.generation_tasks:
            results.update(self._generation(module, step))
        if results:
            log.info("eval step %d: %s", step, ", ".join(f"{k}={v:.4f}" for k, v in results.items()))
        return results

    def _generation(self, module: nn.Module, step: int) -> dict[str, float]:
        """Anneal phase: save the current weights and run the few-shot generation tasks on them."""
        from infir.train.export import export_model

        model_dir = self.out_dir / "current_model"
        export_model(module, module.model.config if hasattr(module, "model") else None, model_dir,
                     self.tokenizer, self.env)
        results = {}
        if self.env.is_main:
            results = task_generation_eval(model_dir, self.generation_tasks, self.generation_limit,
                                           self.out_dir / "generation" / f"step_{step:08d}", self.benchmarks_dir)
        barrier(self.env)
        return results


def _task_name(path: str) -> str:
    """gsm8k -> gsm8k; gsm8k/test.jsonl -> gsm8k; mmlu/test/ -> mmlu; my_task.jsonl -> my_task."""
    from infir.eval.tasks import resolve_task

    resolved = resolve_task(path)
    if resolved is not None:
        return resolved[0].name
    p = Path(path)
    name = p.name.split(".")[0]
    return p.parent.name if name in {"test", "train", "dev", "valid", "validation", "val"} else name


def reference_tokens(tokenizer: Any, text: str, max_len: int) -> tuple[list[int], int]:
    """A reference model's ids for `text` and the UTF-8 bytes of text they cover.

    The ids start with the tokenizer's BOS, or, for tokenizers without one (Qwen2's), its end-of-text token as
    the document-start context (lm-eval-harness's prefix token), so every text token is scored; at most
    `max_len` ids are kept, and the byte count covers exactly the text tokens kept.
    """
    from infir.model.registry import special_ids

    ids = special_ids(tokenizer)
    prefix = ids["bos"] if ids["bos"] is not None else ids["end_of_text"]
    if prefix is None:
        prefix = getattr(tokenizer, "bos_token_id", None) or getattr(tokenizer, "eos_token_id", None)
    if prefix is None:
        raise ValueError("a reference tokenizer needs a BOS or end-of-text token to start a document with")
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    body, offsets = list(enc["input_ids"])[: max_len - 1], enc["offset_mapping"]
    covered = text[: offsets[len(body) - 1][1]] if body else ""
    return [prefix, *body], len(covered.encode("utf-8"))


def reference_nll_per_byte(model_dir: Path, texts: list[str], max_len: int, env: DistEnv) -> list[float]:
    """NLL per UTF-8 byte of every text under a reference model, tokenized with the reference's own tokenizer.

    Why per byte: references may use other vocabularies than the trained model and than each other (Llama 3's
    128k tokens with up-to-3-digit numbers, Qwen2's 151k with single digits). Per-token NLL then ranks how a
    tokenizer segments a text as much as how predictable the text is: a text a tokenizer cuts into many short,
    easy tokens (digits, rare scripts, markup) gets a low per-token NLL under it although it holds as much
    information. The summed NLL of a text is a property of the model and the text (its log-probability), and
    the text's UTF-8 length does not depend on any tokenizer, so NLL per byte (bits per byte up to a factor
    ln 2, as The Pile and lm-eval report across tokenizers) ranks the same quantity under every reference.
    Per word was the other candidate; it needs a word splitter, which fails on code and on languages without
    spaces, both in the paper's corpus.
    """
    from infir.model.hf_io import load_model
    from infir.model.tokenizer import load_tokenizer
    from infir.train.loop import CausalLMLoss

    model_dir = Path(model_dir)
    if not any((model_dir / f).exists() for f in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")):
        raise FileNotFoundError(f"reference model {model_dir} holds no tokenizer: each reference scores texts with "
                                "its own tokenizer")
    tokenizer = load_tokenizer(model_dir)
    ref = CausalLMLoss(load_model(model_dir, device=env.device)).eval()
    if len(tokenizer) > ref.model.config.vocab_size:
        raise ValueError(f"reference model {model_dir}: tokenizer has {len(tokenizer)} tokens but the model "
                         f"{ref.model.config.vocab_size} embeddings")
    log.info("ranking %d web texts by NLL per byte under %s (%s, its own tokenizer)", len(texts), model_dir,
             ref.model.config.model_type)
    items, sizes = [], []
    for text in texts:
        ids, size = reference_tokens(tokenizer, text, max_len)
        items.append(([], ids))
        sizes.append(size)
    return [s / max(b, 1) for (s, _), b in zip(continuation_nll(ref, items, env.device), sizes, strict=True)]
