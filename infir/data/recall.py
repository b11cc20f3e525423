"""Reasoning-oriented recall (InfiR §2.1.2, after DeepSeekMath and OpenCoder): per domain (math, code,
other reasoning) a fastText classifier is trained on seed positives vs negatives drawn uniformly from the pages
being recalled from (a reservoir sample over every shard, not the first N records); it scores that sample, and
the pages it recalls join the positives of the next round. A tenth of the seeds is held out: each round reports
its recall on them (the fraction scoring above the threshold) and how much of the pool it recalled."""

from __future__ import annotations

import random
import tempfile
from collections.abc import Iterable
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


MIN_TABLE_BYTES = 64 << 20


def train_classifier(positives: list[str], negatives: list[str], path: Path | None, epochs: int = 10,
                     seed: int = 0, dim: int = 64, bucket: int = 2_000_000, lr: float = 0.5):
    """A binary fastText model (__label__pos / __label__neg), saved to `path` unless it is None."""
    import fasttext

    fasttext.FastText.eprint = lambda *a, **k: None
    rows = [f"__label__pos {_clean(t)}" for t in positives] + [f"__label__neg {_clean(t)}" for t in negatives]
    random.Random(seed).shuffle(rows)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as f:
        f.write("\n".join(rows) + "\n")
    # fastText's input matrix is dim x (words + bucket) floats. Measured here: when it is small enough to come
    # from heap memory the process freed earlier (under glibc's 32 MB mmap threshold), training hits "Encountered
    # NaN" on every run but a process's first (10k buckets: 5 of 6 runs; 100k on 600 documents: 5 of 6), and
    # never when it is larger (200k-2M buckets: 0 of 48): small tables are raised to 64 MB (MIN_TABLE_BYTES).
    bucket = max(bucket, -(-MIN_TABLE_BYTES // (4 * dim)))
    try:
        model = fasttext.train_supervised(
            f.name, epoch=epochs, lr=lr, wordNgrams=2, dim=dim, bucket=bucket, minCount=1, thread=1, seed=seed,
            verbose=0,
        )
    except RuntimeError as e:
        raise RuntimeError(f"fastText recall training failed ({e}) with lr {lr}, dim {dim}, bucket {bucket}; "
                           "lower recall.lr") from None
    finally:
        Path(f.name).unlink(missing_ok=True)
    if path is not None:
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


def seed_texts(paths: list[Path], max_chars: int) -> list[str]:
    """Texts of seed files or folders (any format infir reads)."""
    out: list[str] = []
    for p in paths:
        files = sorted(x for x in Path(p).rglob("*") if x.is_file()) if Path(p).is_dir() else [Path(p)]
        for f in files:
            out += [item.text for item in read_path(f, max_chars) if isinstance(item, Record)]
    return out


def reservoir(items: Iterable[str], k: int, seed: int) -> tuple[list[str], int]:
    """A uniform sample of k items from a stream (Algorithm R) and the stream's length."""
    rng = random.Random(seed)
    sample: list[str] = []
    n = 0
    for n, item in enumerate(items, 1):
        if len(sample) < k:
            sample.append(item)
        else:
            j = rng.randrange(n)
            if j < k:
                sample[j] = item
    return sample, n


def train_recall(cfg: RecallConfig, pool: Iterable[str], out_dir: Path, max_chars: int) -> Path:
    """Train one classifier per seed domain with iterative seed expansion; models + stats in out_dir."""
    out_dir = Path(out_dir)
    if (out_dir / "recall_stats.json").exists():
        return out_dir
    corpus, pool_size = reservoir(pool, cfg.sample, cfg.seed)
    rng = random.Random(cfg.seed)
    stats: dict[str, list[dict]] = {}
    for domain, seed_paths in cfg.seeds.items():
        seeds = seed_texts([Path(p) for p in seed_paths], max_chars)
        if not seeds:
            raise ValueError(f"recall: no seed documents for domain '{domain}' in {[str(p) for p in seed_paths]}")
        rng.shuffle(seeds)
        n_held = int(len(seeds) * cfg.heldout_fraction) if len(seeds) >= 10 else 0
        held, positives = seeds[:n_held], seeds[n_held:]
        stats[domain] = []
        recalled: set[int] = set()
        for it in range(cfg.iterations):
            pool_idx = [i for i in range(len(corpus)) if i not in recalled]
            n_neg = min(len(pool_idx), max(1, int(len(positives) * cfg.negatives_per_positive)))
            negatives = [corpus[i] for i in rng.sample(pool_idx, n_neg)]
            last = it == cfg.iterations - 1  # only the last round's classifier is kept (dim x bucket floats)
            model = train_classifier(positives, negatives, out_dir / f"{domain}.bin" if last else None,
                                     cfg.epochs, cfg.seed, cfg.dim, cfg.bucket, cfg.lr)
            scores = positive_prob(model, corpus) if corpus else np.zeros(0)
            if cfg.top_k:
                chosen = set(np.argsort(-scores)[: cfg.top_k].tolist())
            else:
                chosen = set(np.flatnonzero(scores >= cfg.threshold).tolist())
            new = chosen - recalled
            recalled |= chosen
            row = {"iteration": it, "seeds": len(positives), "negatives": n_neg, "pool_sample": len(corpus),
                   "pool": pool_size, "recalled": len(chosen), "new": len(new),
                   "recalled_fraction": round(len(chosen) / max(len(corpus), 1), 4)}
            if held:
                row["heldout_seeds"] = len(held)
                row["heldout_recall"] = round(float(np.mean(positive_prob(model, held) >= cfg.threshold)), 4)
            stats[domain].append(row)
            positives = positives + [corpus[i] for i in sorted(new)]  # DeepSeekMath: recalled pages join the seeds
            log.info("recall %s round %d: %d of %d sampled pages recalled (%d new), held-out seed recall %s",
                     domain, it, len(chosen), len(corpus), len(new), row.get("heldout_recall", "-"))
    atomic_write_json(out_dir / "recall_stats.json", stats)
    return out_dir


class RecallScorer:
    """Scores a text with every trained domain classifier; `route` picks the domain by priority."""

    _cache: dict[str, RecallScorer] = {}

    @classmethod
    def load(cls, models_dir: Path) -> RecallScorer:
        """One loaded set of classifiers per process (phase 1 builds a plan per shard)."""
        files = sorted(Path(models_dir).glob("*.bin"))  # retrained models in the same folder are new models
        key = str([(str(f.resolve()), f.stat().st_mtime_ns, f.stat().st_size) for f in files]) or str(models_dir)
        if key not in cls._cache:
            cls._cache.clear()
            cls._cache[key] = cls(models_dir)
        return cls._cache[key]

    def __init__(self, models_dir: Path):
        import fasttext

        fasttext.FastText.eprint = lambda *a, **k: None
        self.models = {p.stem: fasttext.load_model(str(p)) for p in sorted(Path(models_dir).glob("*.bin"))}
        if not self.models:
            raise FileNotFoundError(f"no recall classifiers (*.bin) in {models_dir}")

    def scores(self, text: str) -> dict[str, float]:
        return {d: float(positive_prob(m, [text])[0]) for d, m in self.models.items()}

    def best(self, text: str) -> tuple[str, float]:
        return self.best_batch([text])[0]

    def probabilities(self, texts: list[str]) -> dict[str, np.ndarray]:
        return {d: positive_prob(m, texts) for d, m in self.models.items()}

    def route(self, texts: list[str], threshold: float, priority: list[str]) -> list[tuple[str | None, dict]]:
        """Per text: the first domain in `priority` whose classifier scores it >= threshold (the paper recalls
        math first, then code, then other reasoning text), or None; with every classifier's probability."""
        probs = self.probabilities(texts)
        order = [d for d in priority if d in probs] + [d for d in probs if d not in priority]
        out = []
        for i in range(len(texts)):
            scores = {d: round(float(probs[d][i]), 4) for d in order}
            out.append((next((d for d in order if probs[d][i] >= threshold), None), scores))
        return out

    def best_batch(self, texts: list[str]) -> list[tuple[str, float]]:
        """(domain, probability) of the top classifier for each text (ties: the first domain by name)."""
        if not texts:
            return []
        names = list(self.models)
        probs = np.stack([positive_prob(self.models[d], texts) for d in names])
        top = probs.argmax(axis=0)
        return [(names[j], float(probs[j, i])) for i, j in enumerate(top.tolist())]
