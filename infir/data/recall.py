"""Reasoning-oriented recall (InfiR §2.1.2, after DeepSeekMath and OpenCoder): per domain (math, code,
other reasoning) a fastText classifier is trained on seed positives vs random negatives from the corpus;
it scores the corpus, and the pages it recalls join the seeds of the next iteration."""

from __future__ import annotations

import json
import random
import tempfile
from pathlib import Path

import numpy as np

from infir.data.config import RecallConfig
from infir.data.readers import read_path
from infir.data.records import Record
from infir.utils.io import atomic_write_json
from infir.utils.log import get_logger

log = get_logger(__name__)


def _clean(text: str) -> str:
    return " ".join(text.lower().split())[:20_000]


def train_classifier(positives: list[str], negatives: list[str], path: Path, epochs: int = 10, seed: int = 0):
    """A binary fastText model (__label__pos / __label__neg) saved to `path`."""
    import fasttext

    fasttext.FastText.eprint = lambda *a, **k: None
    rows = [f"__label__pos {_clean(t)}" for t in positives] + [f"__label__neg {_clean(t)}" for t in negatives]
    random.Random(seed).shuffle(rows)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as f:
        f.write("\n".join(rows) + "\n")
    try:
        model = fasttext.train_supervised(
            f.name, epoch=epochs, lr=0.5, wordNgrams=2, dim=64, minCount=1, thread=1, seed=seed, verbose=0
        )
    finally:
        Path(f.name).unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save_model(str(path))
    return model


def positive_prob(model, texts: list[str]) -> np.ndarray:
    labels, probs = model.predict([_clean(t) for t in texts], k=2)
    out = np.zeros(len(texts))
    for i, (ls, ps) in enumerate(zip(labels, probs, strict=True)):
        out[i] = dict(zip(ls, ps, strict=True)).get("__label__pos", 0.0)
    return np.clip(out, 0.0, 1.0)


def auc(pos_scores: np.ndarray, neg_scores: np.ndarray) -> float:
    """Area under the ROC curve: P(random positive scores above random negative), ties count half."""
    pos, neg = np.asarray(pos_scores, float), np.asarray(neg_scores, float)
    if not len(pos) or not len(neg):
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))


def _texts(paths: list[Path], max_chars: int, limit: int | None = None) -> list[str]:
    out: list[str] = []
    for p in paths:
        files = sorted(x for x in Path(p).rglob("*") if x.is_file()) if Path(p).is_dir() else [Path(p)]
        for f in files:
            for item in read_path(f, max_chars):
                if isinstance(item, Record):
                    out.append(item.text)
                    if limit and len(out) >= limit:
                        return out
    return out


def train_recall(cfg: RecallConfig, shards: list, out_dir: Path, max_chars: int, sample: int = 5000) -> Path:
    """Train one classifier per seed domain with iterative seed expansion; models + stats in out_dir."""
    out_dir = Path(out_dir)
    if (out_dir / "recall_stats.json").exists():
        return out_dir
    corpus = _texts([f for _, files, _ in shards for f in files], max_chars, limit=sample)
    rng = random.Random(cfg.seed)
    stats: dict[str, list[dict]] = {}
    for domain, seed_paths in cfg.seeds.items():
        positives = _texts([Path(p) for p in seed_paths], max_chars)
        if not positives:
            raise ValueError(f"recall: no seed documents for domain '{domain}' in {seed_paths}")
        stats[domain] = []
        recalled: set[int] = set()
        for it in range(cfg.iterations):
            pool = [i for i in range(len(corpus)) if i not in recalled]
            n_neg = min(len(pool), max(1, int(len(positives) * cfg.negatives_per_positive)))
            negatives = [corpus[i] for i in rng.sample(pool, n_neg)]
            model = train_classifier(positives, negatives, out_dir / f"{domain}.bin", cfg.epochs, cfg.seed)
            scores = positive_prob(model, corpus) if corpus else np.zeros(0)
            if cfg.top_k:
                chosen = set(np.argsort(-scores)[: cfg.top_k].tolist())
            else:
                chosen = set(np.flatnonzero(scores >= cfg.threshold).tolist())
            new = chosen - recalled
            recalled |= chosen
            positives = positives + [corpus[i] for i in sorted(new)]
            stats[domain].append(
                {
                    "iteration": it,
                    "seeds": len(positives),
                    "negatives": n_neg,
                    "recalled": len(chosen),
                    "new": len(new),
                }
            )
            log.info(
                "recall %s iteration %d: %d of %d sampled pages recalled (%d new)",
                domain,
                it,
                len(chosen),
                len(corpus),
                len(new),
            )
    atomic_write_json(out_dir / "recall_stats.json", stats)
    return out_dir


class RecallScorer:
    """Scores a text with every trained domain classifier; `best` gives the top domain and probability."""

    def __init__(self, models_dir: Path):
        import fasttext

        fasttext.FastText.eprint = lambda *a, **k: None
        self.models = {p.stem: fasttext.load_model(str(p)) for p in sorted(Path(models_dir).glob("*.bin"))}
        if not self.models:
            raise FileNotFoundError(f"no recall classifiers (*.bin) in {models_dir}")

    def scores(self, text: str) -> dict[str, float]:
        return {d: float(positive_prob(m, [text])[0]) for d, m in self.models.items()}

    def best(self, text: str) -> tuple[str, float]:
        s = self.scores(text)
        domain = max(s, key=s.get)
        return domain, s[domain]


def load_stats(out_dir: Path) -> dict:
    return json.loads((Path(out_dir) / "recall_stats.json").read_text())
