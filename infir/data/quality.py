"""Quality assessment (InfiR §2.1.2): model-based scorers and static analysis of code.

- `ModelScorer`: the FineWeb-Edu classifier's and the FineMath classifier's architecture, a transformers
  sequence-classification model with one regression output (score ~0-5; int_score = round(clip(score, 0, 5))),
  from a local folder or a hub id, batched, on GPU when present.
- `train_scorer`: a scorer of that architecture trained from labels, as FineWeb-Edu trained theirs: the encoder
  frozen, the regression head fitted on its features (closed-form ridge regression instead of 20 epochs of
  gradient steps: the same optimum of the same squared loss, in one pass over the data).
- `StaticAnalyzer`: syntax for every allowed language (Python's own parser; tree-sitter grammars from PyPI for
  the others) and pyflakes lint density for Python.
"""

from __future__ import annotations

import ast
import importlib
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from infir.data.records import Record
from infir.utils.log import get_logger

log = get_logger(__name__)

# tree-sitter grammar packages on PyPI: language -> (module, function returning the language)
GRAMMARS = {
    "python": ("tree_sitter_python", "language"), "javascript": ("tree_sitter_javascript", "language"),
    "java": ("tree_sitter_java", "language"), "c": ("tree_sitter_c", "language"),
    "cpp": ("tree_sitter_cpp", "language"), "csharp": ("tree_sitter_c_sharp", "language"),
    "typescript": ("tree_sitter_typescript", "language_typescript"), "go": ("tree_sitter_go", "language"),
    "rust": ("tree_sitter_rust", "language"), "ruby": ("tree_sitter_ruby", "language"),
    "php": ("tree_sitter_php", "language_php"), "shell": ("tree_sitter_bash", "language"),
}  # fmt: skip


def _device(name: str) -> str:
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def check_scorer(model: str, what: str) -> None:
    """A clear error before any work when `model` is a local path that is not a one-output
    sequence-classification model folder; hub ids (org/name) are checked when they load."""
    path = Path(model).expanduser()
    if not path.exists():
        if model.startswith(("/", ".", "~")) or model.count("/") != 1:
            raise ValueError(f"{what}: scorer {model} not found (a local folder, or a hub id such as "
                             "HuggingFaceFW/fineweb-edu-classifier)")
        return
    if not path.is_dir():
        raise ValueError(f"{what}: scorer {model} is a file; expected a transformers model folder")
    cfg_path = path / "config.json"
    if not cfg_path.exists():
        raise ValueError(f"{what}: scorer folder {model} has no config.json (not a transformers model folder)")
    cfg = json.loads(cfg_path.read_text())
    archs = cfg.get("architectures") or []
    if not any(str(a).endswith("ForSequenceClassification") for a in archs):
        raise ValueError(
            f"{what}: scorer folder {model} holds a {', '.join(archs) or cfg.get('model_type', '?')} model, not a "
            "sequence-classification scorer (the FineWeb-Edu/FineMath classifier architecture); train one with "
            "`infir data train-quality`"
        )
    labels = len(cfg.get("id2label") or {}) or int(cfg.get("num_labels", 1))
    if labels != 1:
        raise ValueError(f"{what}: scorer folder {model} has {labels} labels; a quality scorer has one regression "
                         "output")
    if not any((path / f).exists() for f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt")):
        raise ValueError(f"{what}: scorer folder {model} has no tokenizer files")


class ModelScorer:
    """score(texts) -> one float per text; batched; cached per (model, device) within a process."""

    _cache: dict[tuple[str, str], ModelScorer] = {}

    def __init__(self, model: str, device: str = "auto", batch_size: int = 32, max_length: int = 512):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.device = _device(device)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model)
            dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
            self.model = AutoModelForSequenceClassification.from_pretrained(model, dtype=dtype)
        except OSError as e:
            raise ValueError(f"quality scorer {model} cannot be loaded: {e}") from None
        if self.model.config.num_labels != 1:
            raise ValueError(f"quality scorer {model} has {self.model.config.num_labels} outputs, expected 1")
        self.model.to(self.device).eval()
        self.batch_size, self.max_length, self.name = batch_size, max_length, model

    @classmethod
    def load(cls, model: str, device: str = "auto", batch_size: int = 32, max_length: int = 512) -> ModelScorer:
        key = (model, _device(device))
        if key not in cls._cache:
            cls._cache[key] = cls(model, device, batch_size, max_length)
        scorer = cls._cache[key]
        scorer.batch_size, scorer.max_length = batch_size, max_length
        return scorer

    def score(self, texts: list[str]) -> list[float]:
        import torch

        out: list[float] = []
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths pad less
        scores = [0.0] * len(texts)
        for k in range(0, len(order), self.batch_size):
            idx = order[k : k + self.batch_size]
            enc = self.tokenizer([texts[i] for i in idx], truncation=True, max_length=self.max_length,
                                 padding=True, return_tensors="pt").to(self.device)
            with torch.no_grad():
                logits = self.model(**enc).logits.squeeze(-1).float().cpu().tolist()
            for i, v in zip(idx, logits if isinstance(logits, list) else [logits], strict=True):
                scores[i] = float(v)
        out.extend(scores)
        return out


def _head(model: Any):
    import torch

    for name in ("classifier", "score"):
        head = getattr(model, name, None)
        if isinstance(head, torch.nn.Linear):
            return head
    raise ValueError(f"{type(model).__name__}: the regression head is not a single linear layer; train-quality "
                     "supports BERT-style encoders (the FineWeb-Edu and FineMath classifiers' base models)")


def train_scorer(base: str, texts: list[str], labels: list[float], out: Path, *, max_length: int = 512,
                 batch_size: int = 16, l2: float = 1.0, heldout_fraction: float = 0.1, seed: int = 0,
                 device: str = "auto") -> dict[str, Any]:
    """A sequence-classification regression scorer from `base` (an encoder folder or hub id) trained on
    (text, label) pairs with the encoder frozen; saved as a transformers folder at `out`. Returns held-out
    metrics (Pearson r, MSE, and how often int_score >= 3 agrees with label >= 3)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if len(texts) != len(labels) or len(texts) < 4:
        raise ValueError(f"train-quality needs at least 4 labelled texts (got {len(texts)})")
    torch.manual_seed(seed)
    dev = _device(device)
    tokenizer = AutoTokenizer.from_pretrained(base)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1, problem_type="regression")
    model.to(dev).eval()
    head = _head(model)
    feats: list[torch.Tensor] = []
    hook = head.register_forward_hook(lambda m, inp, o: feats.append(inp[0].detach().float().cpu()))
    try:
        for k in range(0, len(texts), batch_size):
            enc = tokenizer(texts[k : k + batch_size], truncation=True, max_length=max_length, padding=True,
                            return_tensors="pt").to(dev)
            with torch.no_grad():
                model(**enc)
    finally:
        hook.remove()
    x = torch.cat(feats).numpy().astype(np.float64)
    y = np.asarray(labels, dtype=np.float64)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(y))
    n_held = int(len(y) * heldout_fraction) if len(y) >= 20 else 0
    held, train = perm[:n_held], perm[n_held:]
    xm, ym = x[train].mean(axis=0), y[train].mean()
    xc = x[train] - xm
    w = np.linalg.solve(xc.T @ xc + l2 * np.eye(x.shape[1]), xc.T @ (y[train] - ym))
    b = float(ym - xm @ w)
    with torch.no_grad():
        head.weight.copy_(torch.tensor(w, dtype=head.weight.dtype).reshape(1, -1))
        head.bias.fill_(b)
    model.config.problem_type = "regression"
    model.config.id2label, model.config.label2id = {0: "score"}, {"score": 0}
    out = Path(out)
    model.to("cpu").save_pretrained(out)
    tokenizer.save_pretrained(out)
    metrics: dict[str, Any] = {"examples": len(y), "train": len(train), "heldout": len(held), "base": base,
                               "out": str(out)}
    if len(held) >= 2:
        pred = x[held] @ w + b
        metrics["heldout_mse"] = round(float(np.mean((pred - y[held]) ** 2)), 4)
        if np.std(pred) > 0 and np.std(y[held]) > 0:
            metrics["heldout_pearson"] = round(float(np.corrcoef(pred, y[held])[0, 1]), 4)
        metrics["heldout_3plus_agreement"] = round(float(np.mean((np.round(np.clip(pred, 0, 5)) >= 3)
                                                                 == (y[held] >= 3))), 4)
    (out / "infir_quality.json").write_text(json.dumps(metrics, indent=2))
    return metrics


# --------------------------------------------------------------------------- static analysis of code


def python_static_analysis(source: str) -> tuple[bool, int]:
    """(parses, number of pyflakes problems)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False, 0
    from pyflakes.checker import Checker

    return True, len(Checker(tree).messages)


def grammar(language: str):
    """The tree-sitter Language for a programming language; ImportError naming the PyPI package if missing."""
    import tree_sitter

    module, fn = GRAMMARS.get(language, (f"tree_sitter_{language}", "language"))
    try:
        mod = importlib.import_module(module)
    except ImportError:
        raise ImportError(f"no tree-sitter grammar for {language}: pip install {module.replace('_', '-')}") from None
    return tree_sitter.Language(getattr(mod, fn)())


def tree_sitter_parses(source: str, language: str) -> bool | None:
    """True/False when a tree-sitter grammar for the language is installed, else None."""
    try:
        import tree_sitter

        lang = grammar(language)
    except ImportError:
        return None
    return not tree_sitter.Parser(lang).parse(source.encode("utf-8")).root_node.has_error


class StaticAnalyzer:
    """check(record) -> drop reason or None for a source file; Python is parsed by `ast` (the exact grammar of
    the running interpreter) and linted by pyflakes, the other allowed languages by their tree-sitter grammar."""

    def __init__(self, languages: list[str], max_lint_errors_per_100_lines: float = 5.0):
        import tree_sitter

        self.max_lint = max_lint_errors_per_100_lines
        self.parsers = {lang: tree_sitter.Parser(grammar(lang)) for lang in languages if lang != "python"}

    def check(self, rec: Record) -> str | None:
        lang = rec.metadata.get("language_code")
        if lang == "python":
            ok, problems = python_static_analysis(rec.text)
            if not ok:
                return "code_syntax_error"
            lines = max(1, rec.text.count("\n") + 1)
            rec.metadata["lint_problems"] = problems
            return "code_lint_density" if problems * 100 / lines > self.max_lint else None
        parser = self.parsers.get(lang or "")
        if parser is None:
            return None
        return "code_syntax_error" if parser.parse(rec.text.encode("utf-8")).root_node.has_error else None
