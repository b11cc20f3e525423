"""Per-document curation steps. Each step is a name plus `check(record) -> drop reason | None`; the
pipeline runs them in order and keeps a funnel of what each one kept and dropped (and why)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from infir.data.config import CurateConfig
from infir.data.records import Record


@dataclass
class Step:
    name: str
    check: Callable[[Record], str | None]


@dataclass
class Funnel:
    """Per-step counts: in, kept, dropped by reason (merged across shards by the pipeline)."""

    steps: dict[str, dict] = field(default_factory=dict)

    def entry(self, name: str) -> dict:
        return self.steps.setdefault(name, {"step": name, "in": 0, "kept": 0, "dropped": Counter()})

    def record(self, name: str, reason: str | None) -> None:
        e = self.entry(name)
        e["in"] += 1
        if reason is None:
            e["kept"] += 1
        else:
            e["dropped"][reason] += 1

    def to_list(self) -> list[dict]:
        return [{**e, "dropped": dict(e["dropped"])} for e in self.steps.values()]

    def merge(self, rows: list[dict]) -> None:
        for row in rows:
            e = self.entry(row["step"])
            e["in"] += row["in"]
            e["kept"] += row["kept"]
            e["dropped"].update(row["dropped"])


def langid_step(cfg: CurateConfig) -> Step:
    from infir.data.langid import LanguageId

    if cfg.langid.model_path is None:
        raise ValueError("langid.enabled needs langid.model_path (lid.176.ftz)")
    model = LanguageId(cfg.langid.model_path)
    allowed = set(cfg.langid.languages)

    def check(rec: Record) -> str | None:
        if rec.domain not in cfg.langid.domains:
            return None
        lang, score = model.predict(rec.text)
        rec.metadata["language"], rec.metadata["language_score"] = lang, round(score, 4)
        if lang not in allowed or score < cfg.langid.min_score:
            return "language_not_allowed"
        return None

    return Step("langid", check)


def heuristics_step(cfg: CurateConfig) -> Step:
    import functools
    import inspect

    from infir.data import heuristics as h

    hc = cfg.heuristics
    known = {f.__name__: f for f in (h.gopher_repetition, h.gopher_quality, h.c4_quality, h.fineweb_quality)}
    for name, overrides in hc.thresholds.items():
        if name not in known:
            raise ValueError(f"heuristics.thresholds: unknown filter '{name}' (known: {', '.join(known)})")
        params = inspect.signature(known[name]).parameters
        bad = [k for k in overrides if k not in params or k == "doc"]
        if bad:
            raise ValueError(f"heuristics.thresholds.{name}: unknown setting(s) {bad}")
    chain = [
        functools.partial(f, **hc.thresholds.get(f.__name__, {}))
        for f, on in (
            (h.gopher_repetition, hc.gopher_repetition),
            (h.gopher_quality, hc.gopher_quality),
            (h.c4_quality, hc.c4_quality),
            (h.fineweb_quality, hc.fineweb_quality),
        )
        if on
    ]

    def check(rec: Record) -> str | None:
        if rec.domain not in hc.domains:
            return None
        doc = h.Doc(rec.text)
        for f in chain:
            reason = f(doc)
            if reason:
                return reason
        if hc.math_colon and rec.domain == "math":
            reason = h.math_colon(doc)
            if reason:
                return reason
        rec.text = doc.text  # C4's rule removes some lines (as in FineWeb)
        return None

    return Step("heuristics", check)


def code_step(cfg: CurateConfig) -> Step:
    from infir.data.code_rules import check_code

    def check(rec: Record) -> str | None:
        if rec.domain != "code":
            return None
        return check_code(rec.text, rec.metadata.get("language_code"))

    return Step("code_rules", check)


def recall_step(cfg: CurateConfig, models_dir: Path) -> Step:
    from infir.data.recall import RecallScorer

    scorer = RecallScorer(models_dir)

    def check(rec: Record) -> str | None:
        if rec.domain not in cfg.recall.domains:
            return None
        domain, score = scorer.best(rec.text)
        rec.metadata["recall_score"] = round(score, 4)
        if score < cfg.recall.threshold:
            return "not_recalled"
        rec.metadata["recalled_domain"] = domain
        return None

    return Step("recall", check)


def quality_step(cfg: CurateConfig) -> Step:
    from infir.data.quality import QualityGate

    gate = QualityGate(cfg.quality)
    return Step("quality", gate.check)


def decontam_step(cfg: CurateConfig, benchmarks_dir: Path) -> Step:
    from infir.data.decontam import Decontaminator, load_benchmark_texts

    index = _decontam_index(cfg, benchmarks_dir, Decontaminator, load_benchmark_texts)

    def check(rec: Record) -> str | None:
        hit = index.find(rec.text)
        if hit is None:
            return None
        rec.metadata["contamination"] = {"benchmark": hit[0], "ngram": hit[1]}
        return f"contaminated_{hit[0]}" if cfg.decontam.mode == "drop" else None

    return Step("decontam", check)


_INDEXES: dict[tuple, object] = {}


def _decontam_index(cfg, benchmarks_dir, cls, loader):
    """One benchmark n-gram index per process (building it takes a second or two)."""
    key = (str(benchmarks_dir), tuple(cfg.decontam.benchmarks), cfg.decontam.n)
    if key not in _INDEXES:
        _INDEXES[key] = cls(loader(benchmarks_dir, cfg.decontam.benchmarks), n=cfg.decontam.n)
    return _INDEXES[key]
