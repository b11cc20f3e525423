"""Curation steps: a registry of named steps, the per-domain lists of them, and the plan that runs them.

A step is a small object built from the config by its registry entry: a name plus `check(record) -> drop reason
| None`, or a batched `check_batch(records) -> reasons` (model scorers). The recipe lists the steps per domain,
in order (`curate.steps`; without it `default_steps` builds the lists from the config's switches):

    steps:
      web:  [heuristics, recall, minhash, quality_edu, decontam]
      math: [math_colon, minhash, quality_math, decontam]
      code: [code_language, code_rules, minhash, code_analysis, decontam]

`minhash` is the global dedup barrier: the steps before it run per document in phase 1 (every shard, before
dedup), the steps after it in phase 3, on the documents dedup kept. A step that moves a document to another
domain (recall: a web page recalled as math) hands it on to the new domain's steps that it has not run yet,
so a recalled page gets the colon rule and the math scorer, and is tokenised as math.

The funnel counts, per domain the document entered with, what each step kept and dropped (and why).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from infir.data.config import DOMAINS, STEP_NAMES, CurateConfig
from infir.data.records import Record
from infir.utils.config import check_overrides
from infir.utils.log import get_logger

log = get_logger(__name__)
BARRIER = "minhash"


@dataclass
class Step:
    name: str
    check: Callable[[Record], str | None] | None = None
    check_batch: Callable[[list[Record]], list[str | None]] | None = None

    def run(self, records: list[Record]) -> list[str | None]:
        if self.check_batch is not None:
            return self.check_batch(records)
        assert self.check is not None, f"step {self.name} has neither check nor check_batch"
        return [self.check(r) for r in records]


@dataclass
class StepContext:
    cfg: CurateConfig
    recall_dir: Path | None = None
    benchmarks_dir: Path | None = None


REGISTRY: dict[str, Callable[[StepContext], Step]] = {}


def register(name: str) -> Callable[[Callable[[StepContext], Step]], Callable[[StepContext], Step]]:
    """Add a step factory under `name` (a name must also be listed in config.STEP_NAMES)."""

    def add(factory: Callable[[StepContext], Step]) -> Callable[[StepContext], Step]:
        REGISTRY[name] = factory
        return factory

    return add


# --------------------------------------------------------------------------- the funnel


@dataclass
class Funnel:
    """Per (domain, step) counts: in, kept, dropped by reason (merged across shards by the pipeline)."""

    steps: dict[tuple[str, str], dict] = field(default_factory=dict)

    def entry(self, name: str, domain: str = "all") -> dict:
        return self.steps.setdefault(
            (domain, name), {"step": name, "domain": domain, "in": 0, "kept": 0, "dropped": Counter()}
        )

    def record(self, name: str, reason: str | None, domain: str = "all") -> None:
        e = self.entry(name, domain)
        e["in"] += 1
        if reason is None:
            e["kept"] += 1
        else:
            e["dropped"][reason] += 1

    def rows(self) -> list[dict]:
        """Every (domain, step) row, for saving and merging."""
        return [{**e, "dropped": dict(e["dropped"])} for e in self.steps.values()]

    def to_list(self) -> list[dict]:
        """One row per step, summed over domains, in the order steps were first seen."""
        merged: dict[str, dict] = {}
        for e in self.steps.values():
            m = merged.setdefault(e["step"], {"step": e["step"], "in": 0, "kept": 0, "dropped": Counter()})
            m["in"] += e["in"]
            m["kept"] += e["kept"]
            m["dropped"].update(e["dropped"])
        return [{**m, "dropped": dict(m["dropped"])} for m in merged.values()]

    def by_domain(self) -> dict[str, list[dict]]:
        out: dict[str, list[dict]] = {}
        for e in self.steps.values():
            out.setdefault(e["domain"], []).append({k: (dict(v) if k == "dropped" else v) for k, v in e.items()
                                                    if k != "domain"})
        return out

    def merge(self, rows: list[dict]) -> None:
        for row in rows:
            e = self.entry(row["step"], row.get("domain", "all"))
            e["in"] += row["in"]
            e["kept"] += row["kept"]
            e["dropped"].update(row["dropped"])


def domain_summary(funnel: Funnel, quarantined: dict[str, int], kept: dict[str, int], assumed: dict[str, int],
                   kept_as: dict[str, dict[str, int]]) -> dict[str, dict]:
    """Per input domain: input = kept + dropped + quarantined, the assumed count, the funnel rows, and which
    domains its kept documents ended in (recall moves web pages to math/code/other)."""
    by_domain = funnel.by_domain()
    out = {}
    for d in sorted(set(by_domain) | set(quarantined)):
        rows = by_domain.get(d, [])
        read = next((r["in"] for r in rows if r["step"] == "read"), 0)
        dropped: Counter = Counter()
        for r in rows:
            dropped.update(r["dropped"])
        out[d] = {"input": read + quarantined.get(d, 0), "kept": kept.get(d, 0), "dropped": dict(dropped),
                  "quarantined": quarantined.get(d, 0), "assumed": assumed.get(d, 0),
                  "kept_as": kept_as.get(d, {}), "funnel": rows}
        total = out[d]["kept"] + sum(dropped.values()) + out[d]["quarantined"]
        if out[d]["input"] != total:
            raise AssertionError(f"curation lost records of domain {d}: {out[d]}")
    return out


# --------------------------------------------------------------------------- the steps


@register("langid")
def langid_step(ctx: StepContext) -> Step:
    from infir.data.langid import LanguageId

    cfg = ctx.cfg
    if cfg.langid.model_path is None:
        raise ValueError("the langid step needs langid.model_path (lid.176.ftz)")
    model = LanguageId(cfg.langid.model_path)
    allowed = set(cfg.langid.languages)

    def check(rec: Record) -> str | None:
        lang, score = model.predict(rec.text)
        rec.metadata["language"], rec.metadata["language_score"] = lang, round(score, 4)
        if lang not in allowed or score < cfg.langid.min_score:
            return "language_not_allowed"
        return None

    return Step("langid", check)


def _heuristic_filters(cfg: CurateConfig) -> dict[str, Callable]:
    import functools

    from infir.data import heuristics as h

    hc = cfg.heuristics
    known = {f.__name__: f for f in (h.gopher_repetition, h.gopher_quality, h.c4_quality, h.fineweb_quality)}
    check_overrides("heuristics.thresholds", known, hc.thresholds, "doc")
    return {n: functools.partial(f, **hc.thresholds.get(n, {})) for n, f in known.items()}


def _chain_step(name: str, filters: list[Callable]) -> Step:
    from infir.data.heuristics import Doc

    def check(rec: Record) -> str | None:
        doc = Doc(rec.text)
        for f in filters:
            reason = f(doc)
            if reason:
                return reason
        rec.text = doc.text  # C4's rule removes some lines (as in FineWeb)
        return None

    return Step(name, check)


@register("heuristics")
def heuristics_step(ctx: StepContext) -> Step:
    """FineWeb's chain: Gopher repetition -> Gopher quality -> C4 quality -> FineWeb quality (switchable)."""
    hc = ctx.cfg.heuristics
    filters = _heuristic_filters(ctx.cfg)
    on = [n for n in ("gopher_repetition", "gopher_quality", "c4_quality", "fineweb_quality") if getattr(hc, n)]
    return _chain_step("heuristics", [filters[n] for n in on])


def _single_filter(name: str) -> Callable[[StepContext], Step]:
    def factory(ctx: StepContext) -> Step:
        return _chain_step(name, [_heuristic_filters(ctx.cfg)[name]])

    factory.__doc__ = f"FineWeb's {name} filter alone (thresholds: heuristics.thresholds.{name})."
    return factory


for _name in ("gopher_repetition", "gopher_quality", "c4_quality", "fineweb_quality"):
    register(_name)(_single_filter(_name))


@register("math_colon")
def math_colon_step(ctx: StepContext) -> Step:
    """InfiR §5.1.2: drop math text that ends with a colon."""
    from infir.data.heuristics import Doc, math_colon

    return Step("math_colon", lambda rec: math_colon(Doc(rec.text)))


def _source_file(rec: Record) -> bool:
    """Code rules apply to source files; code-related web text that recall routed to code has no language."""
    return not rec.metadata.get("recalled_from")


@register("code_language")
def code_language_step(ctx: StepContext) -> Step:
    """The language allowlist (the paper: Python, JavaScript, Java, C)."""
    allowed = set(ctx.cfg.code.languages)

    def check(rec: Record) -> str | None:
        if not _source_file(rec):
            return None
        lang = rec.metadata.get("language_code")
        if not lang:
            return "code_language_unknown"
        return None if lang in allowed else "code_language_not_allowed"

    return Step("code_language", check)


@register("code_rules")
def code_rules_step(ctx: StepContext) -> Step:
    """OpenCoder-style rules: general ones, then the file's language's own (infir/data/code_rules.py)."""
    from infir.data.code_rules import check_code, validate_thresholds

    thresholds = ctx.cfg.code.thresholds
    validate_thresholds(thresholds)

    def check(rec: Record) -> str | None:
        if not _source_file(rec):
            return None
        return check_code(rec.text, rec.metadata.get("language_code"), thresholds)

    return Step("code_rules", check)


@register("recall")
def recall_step(ctx: StepContext) -> Step:
    """Reasoning-oriented recall: the first classifier in recall.priority (math, code, other) that recalls a
    page moves it to its domain; a page none recalls is dropped as not recalled (recall.drop_unrecalled)."""
    from infir.data.recall import RecallScorer

    cfg = ctx.cfg.recall
    if ctx.recall_dir is None:
        raise ValueError("the recall step needs trained classifiers: set recall.seeds (and recall.enabled)")
    scorer = RecallScorer.load(ctx.recall_dir)

    def check_batch(records: list[Record]) -> list[str | None]:
        out: list[str | None] = []
        routed = scorer.route([r.text for r in records], cfg.threshold, cfg.priority)
        for rec, (domain, scores) in zip(records, routed, strict=True):
            rec.metadata["recall_scores"] = scores
            if domain is None:
                out.append("not_recalled" if cfg.drop_unrecalled else None)
                continue
            rec.metadata["recalled_domain"] = domain
            if domain != rec.domain:
                rec.metadata["recalled_from"] = rec.domain
                rec.metadata["domain"] = domain
            out.append(None)
        return out

    return Step("recall", check_batch=check_batch)


def _scorer_step(name: str, which: str) -> Callable[[StepContext], Step]:
    def factory(ctx: StepContext) -> Step:
        from infir.data.quality import ModelScorer

        sc = getattr(ctx.cfg.quality, which)
        if not sc.model:
            raise ValueError(f"the {name} step needs quality.{which}.model (a folder or hub id)")
        scorer = ModelScorer.load(sc.model, ctx.cfg.quality.device, sc.batch_size, sc.max_length)

        def check_batch(records: list[Record]) -> list[str | None]:
            out: list[str | None] = []
            for rec, score in zip(records, scorer.score([r.text for r in records]), strict=True):
                int_score = int(round(max(0.0, min(score, 5.0))))
                rec.metadata["quality_score"] = round(float(score), 4)
                rec.metadata["quality_int_score"] = int_score
                rec.metadata["quality_scorer"] = which
                out.append(f"low_quality_{which}" if int_score < sc.min_int_score else None)
            return out

        return Step(name, check_batch=check_batch)

    factory.__doc__ = f"The {which} scorer (quality.{which}): keep int_score >= min_int_score."
    return factory


register("quality_edu")(_scorer_step("quality_edu", "edu"))
register("quality_math")(_scorer_step("quality_math", "math"))


@register("code_analysis")
def code_analysis_step(ctx: StepContext) -> Step:
    """Static analysis of source files: syntax for every allowed language (Python's own parser, tree-sitter
    grammars for the others), pyflakes lint density for Python."""
    from infir.data.quality import StaticAnalyzer

    analyzer = StaticAnalyzer(ctx.cfg.code.languages, ctx.cfg.quality.max_lint_errors_per_100_lines)

    def check(rec: Record) -> str | None:
        if not _source_file(rec):
            return None
        return analyzer.check(rec)

    return Step("code_analysis", check)


@register("quality")
def quality_step(ctx: StepContext) -> Step:
    """Quality by domain: the edu scorer on its domains, the math scorer on its domains (each when a model is
    configured), static analysis on code."""
    q = ctx.cfg.quality
    parts: dict[str, Step] = {}
    for which, name in (("edu", "quality_edu"), ("math", "quality_math")):
        sc = getattr(q, which)
        if sc.model:
            for d in sc.domains:
                parts.setdefault(d, _lazy(name, ctx))
    if q.code_static_analysis:
        parts.setdefault("code", _lazy("code_analysis", ctx))

    def check_batch(records: list[Record]) -> list[str | None]:
        out: list[str | None] = [None] * len(records)
        groups: dict[str, list[int]] = {}
        for i, r in enumerate(records):
            if r.domain in parts:
                groups.setdefault(r.domain, []).append(i)
        for d, idx in groups.items():
            for i, reason in zip(idx, parts[d].run([records[i] for i in idx]), strict=True):
                out[i] = reason
        return out

    return Step("quality", check_batch=check_batch)


class _lazy(Step):
    """A step built on first use (a model scorer is loaded only if a shard has documents for it)."""

    def __init__(self, name: str, ctx: StepContext):
        super().__init__(name)
        self._ctx, self._step = ctx, None

    def run(self, records: list[Record]) -> list[str | None]:
        if self._step is None:
            self._step = REGISTRY[self.name](self._ctx)
        return self._step.run(records)


@register("decontam")
def decontam_step(ctx: StepContext) -> Step:
    from infir.data.decontam import Decontaminator, load_benchmark_texts

    cfg = ctx.cfg
    if ctx.benchmarks_dir is None:
        raise ValueError("the decontam step needs a benchmarks folder")
    index = _decontam_index(cfg, ctx.benchmarks_dir, Decontaminator, load_benchmark_texts)

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


# --------------------------------------------------------------------------- lists and the plan


def default_steps(cfg: CurateConfig) -> dict[str, list[str]]:
    """The step list of every domain: `curate.steps` where given, else built from the config's switches."""
    out: dict[str, list[str]] = {}
    for d in DOMAINS:
        pre: list[str] = []
        if cfg.langid.enabled and d in cfg.langid.domains:
            pre.append("langid")
        if cfg.heuristics.enabled and d in cfg.heuristics.domains:
            pre.append("heuristics")
        if d == "math" and cfg.heuristics.enabled and cfg.heuristics.math_colon:
            pre.append("math_colon")
        if d == "code" and cfg.code.enabled:
            pre += ["code_language", "code_rules"]
        if cfg.recall.enabled and d in cfg.recall.domains:
            pre.append("recall")
        post: list[str] = []
        if cfg.quality.enabled:
            if d in cfg.quality.edu.domains and cfg.quality.edu.model:
                post.append("quality_edu")
            if d in cfg.quality.math.domains and cfg.quality.math.model:
                post.append("quality_math")
        if d == "code" and cfg.quality.code_static_analysis:
            post.append("code_analysis")
        if cfg.decontam.enabled:
            post.append("decontam")
        out[d] = pre + ([BARRIER] if cfg.minhash.enabled else []) + post
    out.update(cfg.steps or {})
    return out


def phase_lists(lists: dict[str, list[str]], phase: int) -> dict[str, list[str]]:
    """The steps of each domain before (phase 1) or after (phase 3) the barrier."""
    out = {}
    for d, names in lists.items():
        cut = names.index(BARRIER) if BARRIER in names else len(names)
        out[d] = names[:cut] if phase == 1 else names[cut + 1 :]
    return out


def check_registry() -> None:
    missing = set(STEP_NAMES) - set(REGISTRY) - {BARRIER}
    extra = set(REGISTRY) - set(STEP_NAMES)
    if missing or extra:
        raise AssertionError(f"step registry and config.STEP_NAMES differ: missing {missing}, extra {extra}")


class StepPlan:
    """Runs a batch of records through their domains' steps of one phase; steps are built on first use."""

    def __init__(self, ctx: StepContext, phase: int):
        self.ctx = ctx
        lists = default_steps(ctx.cfg)
        if ctx.benchmarks_dir is None:  # nothing to decontaminate against
            lists = {d: [n for n in names if n != "decontam"] for d, names in lists.items()}
        if ctx.recall_dir is None:
            lists = {d: [n for n in names if n != "recall"] for d, names in lists.items()}
        self.lists = phase_lists(lists, phase)
        self._steps: dict[str, Step] = {}

    def step(self, name: str) -> Step:
        if name not in self._steps:
            self._steps[name] = REGISTRY[name](self.ctx)
        return self._steps[name]

    def _list(self, domain: str) -> list[str]:
        return self.lists.get(domain, self.lists.get(self.ctx.cfg.default_domain, []))

    def run(self, records: list[Record], funnel: Funnel) -> list[tuple[str, str] | None]:
        """Per record (in order): None if kept, else (step, reason). Records may change domain on the way."""
        n = len(records)
        queues = [list(self._list(r.domain)) for r in records]
        ran: list[set[str]] = [set() for _ in range(n)]
        outcome: list[tuple[str, str] | None] = [None] * n
        active = [i for i in range(n) if queues[i]]
        while active:
            groups: dict[str, list[int]] = {}
            for i in active:
                groups.setdefault(queues[i][0], []).append(i)
            for name, idx in groups.items():
                before = [records[i].domain for i in idx]
                reasons = self.step(name).run([records[i] for i in idx])
                for i, was, reason in zip(idx, before, reasons, strict=True):
                    rec = records[i]
                    funnel.record(name, reason, rec.input_domain)
                    ran[i].add(name)
                    queues[i].pop(0)
                    if reason:
                        outcome[i] = (name, reason)
                        queues[i] = []
                    elif rec.domain != was:  # moved: continue with the new domain's steps not run yet
                        queues[i] = [s for s in self._list(rec.domain) if s not in ran[i]]
            active = [i for i in active if queues[i]]
        return outcome


def check_plan(cfg: CurateConfig, benchmarks_dir: Path | None) -> dict[str, list[str]]:
    """Everything about the step lists that can be known before any work: missing seed files, scorer folders of
    the wrong kind, missing grammars or language-id model, unknown rule settings. Returns the lists."""
    from infir.data.code_rules import validate_thresholds

    check_registry()
    lists = default_steps(cfg)
    used = {n for names in lists.values() for n in names}
    if "recall" in used:
        if not cfg.recall.seeds:
            raise ValueError("the recall step needs seed files: recall.seeds {math: [...], code: [...], other: [...]}")
        for domain, paths in cfg.recall.seeds.items():
            for p in paths:
                if not Path(p).exists():
                    raise ValueError(f"recall.seeds.{domain}: seed file {p} not found")
            if domain not in lists:
                raise ValueError(f"recall.seeds.{domain}: no step list for domain {domain}")
    q = cfg.quality
    for which, names in (("edu", ("quality_edu",)), ("math", ("quality_math",))):
        sc = getattr(q, which)
        if used & set(names) and not sc.model:
            raise ValueError(f"the {names[0]} step needs quality.{which}.model (a folder or hub id)")
        if sc.model and (used & set(names) or ("quality" in used)):
            from infir.data.quality import check_scorer

            check_scorer(sc.model, f"quality.{which}.model")
    if "code_analysis" in used or ("quality" in used and q.code_static_analysis):
        from infir.data.quality import grammar

        for lang in cfg.code.languages:
            if lang != "python":
                try:
                    grammar(lang)
                except ImportError as e:
                    raise ValueError(f"code static analysis for {lang}: {e}") from None
    if "langid" in used:
        if cfg.langid.model_path is None or not Path(cfg.langid.model_path).exists():
            raise ValueError(f"the langid step needs langid.model_path (lid.176.ftz); got {cfg.langid.model_path}")
    if "decontam" in used and benchmarks_dir is None:
        log.info("curate: no benchmarks folder given, the decontam step is skipped")
    if {"heuristics", "gopher_repetition", "gopher_quality", "c4_quality", "fineweb_quality"} & used:
        _heuristic_filters(cfg)
    validate_thresholds(cfg.code.thresholds)
    return lists
