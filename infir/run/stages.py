"""The stages `infir run` walks, declared as data: `STAGES`, in order, one `StageSpec` each.

A spec says which recipe section switches the stage on, what it reads (earlier stages' folders, or "the model"
of the latest model-producing stage it names), whether it produces a model (`<stage>/model/`, an HF folder),
which section of the report shows it, and which function runs it — a thin adapter onto one room's public
function. A stage writes only into its own folder (`runs/<name>/<stage>/`); the dict it returns is its summary
in the manifest and the report. A new stage is its recipe section (`infir.run.recipe.Recipe`) plus one spec.

The paper in order: corpus → curate → tokenizer → pretrain → anneal → eval_base (Table 1) → synth → sft_data → sft
→ eval (Table 2) → long_cot_data → long_cot → eval_long_cot (Table 6) → vlm → eval_vl (Table 3) → export.
Before any work the runner calls each spec's `check` (inputs exist, a teacher URL answers, known tasks); a stage
that cannot finish for a reason the user must act on raises `StageFailed` (exit code 1, the message, no traceback).
"""

from __future__ import annotations

import contextlib
import glob as globlib
import json
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from infir.run.recipe import Recipe, RecipeError
from infir.utils.io import open_text, read_json, write_jsonl
from infir.utils.log import get_logger

log = get_logger(__name__)


class StageFailed(RuntimeError):
    """A stage that cannot finish for a reason the user must see (no records passed, a teacher gone): the run
    stops with this message (exit code 1) instead of a traceback, and never trains on nothing."""


@dataclass
class StageContext:
    run_dir: Path
    recipe: Recipe
    data_dir: Path | None

    def stage_dir(self, name: str) -> Path:
        return self.run_dir / name

    @property
    def benchmarks_dir(self) -> Path:
        """Benchmarks laid out like shared/data: the real ones, or the embedded held-out problems."""
        return self.data_dir if self.data_dir else self.stage_dir("corpus") / "benchmarks"

    def model_dir(self, stage: str) -> Path:
        return self.stage_dir(stage) / "model"


ReportSection = Literal["corpus", "curation", "mixture", "training", "evaluation", "table1", "synthesis", "long_cot_data",
                        "table6", "vlm", "table3", "export"]
MODEL = "model"  # in `reads`: the model of the latest earlier model-producing stage (see `model_from`)


@dataclass(frozen=True)
class StageSpec:
    """One stage of `infir run`.

    name: the stage's folder, and the recipe section that configures it (`section` when different).
    A stage runs when the recipe has its section (the corpus section is there unless the recipe says `corpus: null`).
    reads: earlier stages whose folders it reads; MODEL = a model from an earlier stage (`model_from`).
    model_from: the stages whose model it takes, latest enabled first (empty: any model-producing stage).
    own_model: the field of its section that may name its starting model instead (then MODEL needs no stage).
    produces: "model" when it writes `<stage>/model/` (a text LM); "vlm" for the InfiR-VL folder.
    report: the report section that shows it (infir.run.report renders each kind).
    check: checks run before any stage of the invocation does (inputs exist, a teacher URL answers, ...): what
        can be known early fails early, with RecipeError.
    """

    name: str
    run: Callable[[StageContext], dict[str, Any]]
    section: str | None = None
    reads: tuple[str, ...] = ()
    model_from: tuple[str, ...] = ()
    own_model: str = "init_from"
    produces: Literal["model", "vlm"] | None = None
    report: ReportSection | None = None
    check: Callable[[StageContext], None] | None = None

    @property
    def recipe_section(self) -> str:
        return self.section or self.name

    def enabled(self, recipe: Recipe) -> bool:
        return getattr(recipe, self.recipe_section, None) is not None


def enabled_stages(recipe: Recipe) -> list[StageSpec]:
    return [s for s in STAGES if s.enabled(recipe)]


def spec(name: str) -> StageSpec:
    for s in STAGES:
        if s.name == name:
            return s
    raise KeyError(f"no stage {name!r}; stages: {', '.join(s.name for s in STAGES)}")


def model_stage(recipe: Recipe, stage: str) -> str:
    """The stage whose model `stage` reads: the latest enabled model producer before it (among `model_from`)."""
    order = enabled_stages(recipe)
    names = [s.name for s in order]
    before = order[: names.index(stage)] if stage in names else order
    wanted = spec(stage).model_from
    producers = [s.name for s in before if s.produces == "model" and (not wanted or s.name in wanted)]
    if not producers:
        need = " or ".join(wanted) if wanted else "a model-producing stage (" + ", ".join(
            s.name for s in STAGES if s.produces == "model") + ")"
        own = spec(stage).own_model
        raise RecipeError(f"stage {stage} reads a model, but no earlier stage of this recipe produces one: "
                          f"add {need} before it (or name a model folder in {spec(stage).recipe_section}.{own})")
    return producers[-1]


def check_plan(recipe: Recipe, stages: Sequence[StageSpec] | None = None) -> None:
    """Before any work: every enabled stage finds what it reads among the enabled stages before it."""
    order = list(stages) if stages is not None else enabled_stages(recipe)
    seen: list[str] = []
    for st in order:
        for need in st.reads:
            if need == MODEL:
                if getattr(getattr(recipe, st.recipe_section, None), st.own_model, None):
                    continue  # the stage names its own starting model
                model_stage(recipe, st.name)
            elif need not in seen:
                raise RecipeError(f"stage {st.name} reads the output of stage {need}, which this recipe "
                                  f"{'runs after it' if need in [s.name for s in order] else 'does not run'}")
        seen.append(st.name)


# --------------------------------------------------------------------------- corpus


def _text_file_records(path: Path, source: str) -> Iterator[dict]:
    """One record per line of a plain-text corpus file (wiki_demo.txt holds an article a line)."""
    with open_text(path) as f:
        for i, line in enumerate(f):
            if line.strip():
                yield {"id": f"{source}/{i}", "text": line.strip(), "source": source, "metadata": {"domain": "web"}}


def run_corpus(ctx: StageContext) -> dict[str, Any]:
    """Gather the raw corpus: the embedded one (with its eval sets) and/or real files."""
    out = ctx.stage_dir("corpus")
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"inputs": []}
    builtin = ctx.recipe.corpus.builtin
    if builtin is not None:
        from infir.data.builtin_corpus import build_corpus

        summary.update(build_corpus(builtin.model_copy(update={"seed": ctx.recipe.seed + builtin.seed}), out))
        summary["inputs"].append(str(out / "corpus.jsonl"))
        # The embedded eval sets, laid out like shared/data so the eval room reads them unchanged.
        for rel, src in (("gsm8k/test.jsonl", "math_test.jsonl"), ("gsm8k/train.jsonl", "math_train.jsonl"),
                         ("nll/heldout.jsonl", "heldout.jsonl")):
            (out / "benchmarks" / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(out / src, out / "benchmarks" / rel)
    from infir.data.sources import resolve_inputs

    for path in [ctx.data_dir / rel for rel in ctx.recipe.corpus.data_dir_files] if ctx.data_dir else []:
        if not path.exists():
            log.warning(f"corpus: {path} not found, skipped")
        elif path.suffix == ".txt":  # one document a line (wiki_demo.txt holds an article a line)
            converted = out / "real" / (path.stem + ".jsonl")
            write_jsonl(converted, _text_file_records(path, path.stem))
            summary["inputs"].append(str(converted))
        else:
            summary["inputs"].append(str(path))
    # The recipe's inputs: globs expanded, each with its domain/source/language; bad input fails here, named.
    summary["inputs"] += [s.model_dump(exclude_none=True) for s in resolve_inputs(ctx.recipe.corpus.inputs)]
    if not summary["inputs"]:
        raise ValueError("corpus: no input (the embedded corpus is off and no real files were found)")
    (out / "inputs.json").write_text(json.dumps(summary["inputs"], indent=2))
    return summary


# --------------------------------------------------------------------------- curate


def run_curate_stage(ctx: StageContext) -> dict[str, Any]:
    from infir.data.config import InputSpec
    from infir.data.pipeline import run_curate

    inputs = [InputSpec.parse(p) for p in json.loads((ctx.stage_dir("corpus") / "inputs.json").read_text())]
    cfg = ctx.recipe.curate
    if ctx.data_dir is None:
        # The embedded run evaluates on its own held-out problems (laid out as gsm8k/test.jsonl).
        decontam = cfg.decontam.model_copy(update={"benchmarks": ["gsm8k"]})
        cfg = cfg.model_copy(update={"decontam": decontam})
        log.info("curate: decontaminating against the embedded held-out math problems")
    stats = run_curate(cfg, inputs, ctx.stage_dir("curate"), benchmarks_dir=ctx.benchmarks_dir)
    return {k: stats[k] for k in ("input_records", "kept", "dropped", "quarantined", "assumed") if k in stats}


def curated_records(ctx: StageContext) -> Iterator[dict]:
    from infir.utils.io import read_jsonl

    for shard in sorted(ctx.stage_dir("curate").glob("*.jsonl*")):
        yield from read_jsonl(shard)


# --------------------------------------------------------------------------- tokenizer


def run_tokenizer(ctx: StageContext) -> dict[str, Any]:
    from infir.model.tokenizer import load_tokenizer, save_tokenizer, train_bpe_tokenizer

    cfg = ctx.recipe.tokenizer
    out = ctx.stage_dir("tokenizer")
    if cfg.path:
        tok = load_tokenizer(cfg.path)
    else:
        budget = cfg.max_training_chars

        def texts() -> Iterator[str]:
            used = 0
            for rec in curated_records(ctx):
                if used >= budget:
                    return
                used += len(rec["text"])
                yield rec["text"]

        tok = train_bpe_tokenizer(texts(), cfg.vocab_size)
    save_tokenizer(tok, out)
    return {"vocab_size": len(tok), "trained": cfg.path is None}


# --------------------------------------------------------------------------- pretrain / anneal


def tokenize_by_domain(records: Iterator[dict], tokenizer_dir: Path, out_dir: Path) -> dict[str, int]:
    """Tokenized sources, one per domain (code, math, web, ...), so recipes can weight the mixture.

    Streams in one pass with fixed memory; each source folder appears atomically; a rerun after a crash
    resumes from the last checkpoint (`infir.data.tokens.write_token_sources`).
    """
    from infir.data.tokens import write_token_sources
    from infir.model.tokenizer import load_tokenizer

    return write_token_sources(records, load_tokenizer(tokenizer_dir), out_dir, route=_domain_of)


def _domain_of(rec: dict) -> str:
    return str((rec.get("metadata") or {}).get("domain") or "web")


def _math_train_records(ctx: StageContext) -> Iterator[dict]:
    """The annealing set's synthetic reasoning data: step-by-step solved problems."""
    path = ctx.stage_dir("corpus") / "math_train.jsonl"
    for i, line in enumerate(path.read_text().splitlines() if path.exists() else []):
        ex = json.loads(line)
        yield {"id": f"anneal-math/{i}", "text": f"Question: {ex['question']}\nAnswer: {ex['answer']}",
               "metadata": {"domain": "synthetic"}}


def run_pretrain_stage(ctx: StageContext) -> dict[str, Any]:
    from infir.train.pretrain import run_pretrain

    tokens = ctx.stage_dir("pretrain") / "tokens"
    docs = tokenize_by_domain(curated_records(ctx), ctx.stage_dir("tokenizer"), tokens)
    summary = run_pretrain(ctx.recipe.pretrain, data_dir=tokens, output=ctx.stage_dir("pretrain"),
                           tokenizer_dir=ctx.stage_dir("tokenizer"))
    return {**summary, "documents_by_domain": docs}


def _anneal_data_config(ctx: StageContext) -> Any:
    """The recipe's anneal_data, decontaminated against what the pretraining corpus was (unless it says otherwise)."""
    cfg = ctx.recipe.anneal_data
    assert cfg is not None
    if "decontam" not in cfg.curate.model_fields_set:
        decontam = ctx.recipe.curate.decontam if ctx.recipe.curate is not None else cfg.curate.decontam
        if ctx.data_dir is None:  # the embedded run decontaminates against its own held-out problems
            decontam = decontam.model_copy(update={"benchmarks": ["gsm8k"]})
        cfg = cfg.model_copy(update={"curate": cfg.curate.model_copy(update={"decontam": decontam})})
    return cfg


def check_anneal_data_stage(ctx: StageContext) -> None:
    """What can be known without the curated corpus: every annealing file and synth output named exists (synth:
    holds chats), and a source keeping its pretraining share has a pretraining to keep it from. Runs first in the
    stage; it needs nothing earlier stages write, so a runner can call it before any stage runs. (Corpus sources,
    and files holding no documents, are checked by `build_anneal_mix` before it does any work.)"""
    from infir.data.anneal import check_synth
    from infir.data.sources import resolve_inputs

    cfg = ctx.recipe.anneal_data
    if cfg is None:
        return
    for src in cfg.sources:
        try:
            if src.inputs:
                resolve_inputs(src.inputs)
            for path in src.synth:
                check_synth(path, src.name)
        except ValueError as e:
            raise RecipeError(f"anneal_data: {e}") from None
        if src.weight is None and ctx.recipe.pretrain is None and not (ctx.stage_dir("pretrain") / "tokens").is_dir():
            raise RecipeError(f"anneal_data: source {src.name!r} keeps its pretraining share, but this recipe does "
                              "not pretrain (give it a weight)")


def run_anneal_data_stage(ctx: StageContext) -> dict[str, Any]:
    """The annealing mixture of Table 8 (paper §2.2; infir/data/anneal.py) from the curated corpus, the annealing
    corpora and synth runs the recipe names; `anneal` trains on it."""
    from infir.data.anneal import build_anneal_mix, pretraining_shares

    check_anneal_data_stage(ctx)
    cfg = _anneal_data_config(ctx)
    pretrain = None
    if any(s.weight is None for s in cfg.sources):
        tokens_dir = ctx.stage_dir("pretrain") / "tokens"
        if not tokens_dir.is_dir():
            raise RecipeError(f"anneal_data: {tokens_dir} (the pretraining token counts) is missing: run the "
                              "pretrain stage, or give every source a weight")
        sources = ctx.recipe.pretrain.sources if ctx.recipe.pretrain is not None else []
        weights = {Path(s.path).name: s.weight for s in sources} or None
        pretrain = pretraining_shares(tokens_dir, weights)
    try:
        stats = build_anneal_mix(cfg, ctx.stage_dir("anneal_data"), ctx.stage_dir("tokenizer"),
                                 corpus_dir=ctx.stage_dir("curate"), benchmarks_dir=ctx.benchmarks_dir,
                                 pretrain=pretrain)
    except ValueError as e:
        raise RecipeError(f"anneal_data: {e}") from None
    return {"tokens": stats["tokens"], "documents": stats["documents"], "notes": stats["notes"],
            "shares": {r["source"]: round(r["share"], 4) for r in stats["sources"]}}


def run_anneal_stage(ctx: StageContext) -> dict[str, Any]:
    """Annealing (paper §2.4): training continues on the annealing mixture (the anneal_data stage) while the
    learning rate decays from where pretraining left it. Without an anneal_data section, the curated corpus is
    re-weighted by domain (the recipe's `anneal.sources`) plus the embedded worked problems: not the §2.2
    mixture."""
    from infir.train.pretrain import run_pretrain

    cfg = ctx.recipe.anneal
    extra: dict[str, Any] = {}
    if ctx.recipe.anneal_data is not None:
        from infir.data.anneal import FORMAT

        built = ctx.stage_dir("anneal_data") / "mix_stats.json"
        stats = read_json(built) if built.exists() else {}
        if stats.get("format") != FORMAT:
            raise RecipeError(f"anneal: no annealing mixture in {built.parent} (run the anneal_data stage first)")
        tokens = ctx.stage_dir("anneal_data") / "tokens"
        budget = cfg.total_steps() * cfg.tokens_per_step()
        extra = {"mixture_tokens": stats["tokens"], "epochs_over_mixture": round(budget / max(stats["tokens"], 1), 3)}
        if budget > stats["tokens"]:
            log.warning("anneal: the run reads %d tokens, the mixture holds %d: %.2f epochs over it", budget,
                        stats["tokens"], budget / max(stats["tokens"], 1))
    else:
        from itertools import chain

        log.info("anneal: no anneal_data section: re-weighting the curated corpus by anneal.sources (not the "
                 "§2.2 mixture)")
        tokens = ctx.stage_dir("anneal") / "tokens"
        extra = {"documents_by_domain": tokenize_by_domain(chain(curated_records(ctx), _math_train_records(ctx)),
                                                           ctx.stage_dir("tokenizer"), tokens)}
    init = None if cfg.init_from else ctx.model_dir(model_stage(ctx.recipe, "anneal"))
    summary = run_pretrain(cfg, data_dir=tokens, output=ctx.stage_dir("anneal"),
                           tokenizer_dir=ctx.stage_dir("tokenizer"), init_from=init)
    return {**summary, **extra}


# --------------------------------------------------------------------------- inputs, models, teachers


def input_files(ctx: StageContext, patterns: Sequence[str], field: str) -> list[Path]:
    """Files named in a recipe: relative paths (and globs) are looked up under --data-dir first, then from the
    working directory; a folder stands for itself. RecipeError naming the field when one matches nothing."""
    out: list[Path] = []
    for pattern in patterns:
        roots = ([ctx.data_dir] if ctx.data_dir is not None and not Path(pattern).is_absolute() else []) + [None]
        found: list[Path] = []
        for root in roots:
            full = str(root / pattern) if root is not None else pattern
            found = [Path(p) for p in sorted(globlib.glob(full, recursive=True))]
            if found:
                break
        if not found:
            where = f" (looked under --data-dir {ctx.data_dir} and {Path.cwd()})" if ctx.data_dir else ""
            raise RecipeError(f"{field}: {pattern} not found{where}")
        out += found
    return out


def embedded_problems(ctx: StageContext, n: int, field: str) -> list[dict]:
    """The first `n` generated word problems of the embedded corpus ({question, answer ending in #### N})."""
    path = ctx.stage_dir("corpus") / "math_train.jsonl"
    if not path.exists():
        raise StageFailed(f"{field}: the embedded corpus has no generated problems ({path} is missing): "
                          "run the corpus stage with its builtin corpus, or set the field to 0")
    rows = [json.loads(line) for line in path.read_text().splitlines()[:n] if line.strip()]
    return rows


def _model_stages() -> list[str]:
    return [s.name for s in STAGES if s.produces == "model"]


def check_source(ctx: StageContext, source: str | None, field: str, stage: str, required: bool = True) -> None:
    """A model source named in a recipe (teacher, judge, reference): `scripted`, an http(s) URL that must answer,
    a model-producing stage that runs before `stage`, or a model folder."""
    if source is None:
        if required:
            raise RecipeError(f"{field}: name the model (an OpenAI-compatible URL, a model folder, `scripted` for "
                              f"the embedded stand-in, or a stage: {', '.join(_model_stages())})")
        return
    if source == "scripted":
        return
    if source.startswith(("http://", "https://")):
        from infir.synth.teacher import probe

        problem = probe(source)
        if problem:
            raise RecipeError(f"{field}: {problem}; start the server first (or name another model)")
        return
    if source in _model_stages():
        before = [s.name for s in enabled_stages(ctx.recipe)]
        if source not in before or before.index(source) > before.index(stage):
            raise RecipeError(f"{field}: stage {source} does not run before {stage} in this recipe")
        return
    if not (Path(source) / "config.json").is_file():
        raise RecipeError(f"{field}: {source} is neither `scripted`, an http(s) URL, a stage "
                          f"({', '.join(_model_stages())}) nor a model folder (no config.json)")


class Endpoints:
    """Resolve model sources for one stage; `scripted` starts the stand-in teacher's HTTP server (once per stage,
    on loopback) and is stopped when the stage ends."""

    def __init__(self, ctx: StageContext, stack: contextlib.ExitStack) -> None:
        self.ctx, self.stack = ctx, stack
        self.scripted_url: str | None = None
        self.stand_ins: list[str] = []

    def resolve(self, source: str | None, field: str) -> str | None:
        if source is None:
            return None
        if source == "scripted":
            if self.scripted_url is None:
                from infir.serve.runner import BackgroundServer
                from infir.synth.scripted import scripted_teacher_app

                server = self.stack.enter_context(BackgroundServer(scripted_teacher_app()))
                self.scripted_url = server.url
                log.info("%s: the scripted stand-in teacher (not a model) serves on %s", field, server.url)
            self.stand_ins.append(field)
            return self.scripted_url
        if source in _model_stages():
            return str(self.ctx.model_dir(source))
        return source


# --------------------------------------------------------------------------- synthesis (paper §3.1, Figure 2)


def check_synth(ctx: StageContext) -> None:
    cfg = ctx.recipe.synth
    check_source(ctx, cfg.teacher.source, "synth.teacher.source", "synth")
    input_files(ctx, cfg.seeds, "synth.seeds")
    if not cfg.seeds and not cfg.embedded_seeds:
        raise RecipeError("synth: no seeds: list seed files in synth.seeds or set synth.embedded_seeds")
    if cfg.embedded_seeds and (ctx.recipe.corpus is None or ctx.recipe.corpus.builtin is None):
        raise RecipeError("synth.embedded_seeds needs the embedded corpus (corpus.builtin)")


def _rejections(stats: dict[str, Any]) -> str:
    parts = []
    for step, st in (stats.get("steps") or {}).items():
        reasons = st.get("rejected_by_reason") or {}
        if reasons:
            parts.append(f"{step}: " + ", ".join(f"{r} {n}" for r, n in sorted(reasons.items())))
    return "; ".join(parts) or "none recorded"


def run_synth_stage(ctx: StageContext) -> dict[str, Any]:
    """Seeds -> evolve -> teacher responses -> rejection sampling -> judge labels -> diversity sample
    (infir.synth.pipeline); the teacher is `synth.teacher.source`."""
    from infir.synth.config import SynthConfig
    from infir.synth.pipeline import run_synth
    from infir.synth.stage import StepIncomplete
    from infir.synth.teacher import TeacherError

    cfg = ctx.recipe.synth
    out = ctx.stage_dir("synth")
    seeds = input_files(ctx, cfg.seeds, "synth.seeds")
    if cfg.embedded_seeds:
        seeds.append(out / "seeds" / "embedded_problems.jsonl")
        write_jsonl(seeds[-1], embedded_problems(ctx, cfg.embedded_seeds, "synth.embedded_seeds"))
    run_cfg = SynthConfig.model_validate(cfg.model_dump(exclude={"seeds", "embedded_seeds"}))
    with contextlib.ExitStack() as stack:
        endpoints = Endpoints(ctx, stack)
        teacher = endpoints.resolve(cfg.teacher.source, "synth.teacher")
        assert teacher is not None
        try:
            stats = run_synth(run_cfg, seeds, teacher, out)
        except (TeacherError, StepIncomplete, ValueError, FileNotFoundError) as e:
            raise StageFailed(f"synth: {e}") from e
    records = stats["output"]["records"]
    if records == 0:
        raise StageFailed(f"synth: no record passed verification, so there is nothing to train on "
                          f"({stats['output']['rejected']} rejected; by step and reason: {_rejections(stats)}); "
                          f"see {out / 'rejected.jsonl'}")
    return {"records": records, "by_domain": stats["output"]["by_domain"], "teacher": stats["teacher"]["model"],
            "stand_in_teacher": bool(endpoints.stand_ins), "teacher_requests": stats["teacher"]["requests"],
            "cache_hits": stats["teacher"]["cache_hits"], "seeds": stats["steps"]["01_seeds"].get("kept"),
            "steps": {k: {"in": v.get("inputs"), "kept": v.get("kept"), "rejected_by_reason": v.get("rejected_by_reason")}
                      for k, v in stats["steps"].items()},
            "path": stats["output"]["path"]}


def check_sft_data(ctx: StageContext) -> None:
    cfg = ctx.recipe.sft_data
    check_source(ctx, cfg.judge.source, "sft_data.judge.source", "sft_data")
    input_files(ctx, [s.path for s in cfg.sets], "sft_data.sets")
    if ctx.data_dir is not None:
        input_files(ctx, [s.path for s in cfg.data_dir_sets], "sft_data.data_dir_sets")
    if cfg.embedded_sets and (ctx.recipe.corpus is None or ctx.recipe.corpus.builtin is None):
        raise RecipeError("sft_data.embedded_sets needs the embedded corpus (corpus.builtin)")


def run_sft_data_stage(ctx: StageContext) -> dict[str, Any]:
    """The SFT mixture (§3.1): open-source sets labelled by the judge (domain, quality, difficulty), the synth
    stage's records, low quality dropped, diversity-sampled (infir.synth.sets)."""
    from infir.eval.tasks import get_task
    from infir.synth.sets import build_sft_mixture
    from infir.synth.stage import StepIncomplete
    from infir.synth.teacher import TeacherError

    cfg = ctx.recipe.sft_data
    out = ctx.stage_dir("sft_data")
    sets = [(path, s) for s in cfg.sets for path in input_files(ctx, [s.path], "sft_data.sets")]
    if ctx.data_dir is not None:
        sets += [(path, s) for s in cfg.data_dir_sets for path in input_files(ctx, [s.path], "sft_data.data_dir_sets")]
    if cfg.embedded_sets:
        from infir.synth.config import SFTSetSpec

        to_chat = get_task("gsm8k", "chat").to_chat
        assert to_chat is not None
        path = out / "embedded" / "worked_problems.jsonl"
        write_jsonl(path, ({"messages": to_chat(r), "domain": "math"}
                           for r in embedded_problems(ctx, cfg.embedded_sets, "sft_data.embedded_sets")))
        sets.append((path, SFTSetSpec(path=str(path), domain="math")))
    synth = ctx.stage_dir("synth") / "sft.jsonl" if cfg.include_synth and ctx.recipe.synth is not None else None
    with contextlib.ExitStack() as stack:
        endpoints = Endpoints(ctx, stack)
        judge = endpoints.resolve(cfg.judge.source, "sft_data.judge")
        assert judge is not None
        try:
            stats = build_sft_mixture(sets, judge, cfg, out, synth)
        except (TeacherError, StepIncomplete) as e:  # a judge that went away mid-run: resumable, say so
            raise StageFailed(f"sft_data: {e}") from e
    if stats["selected"] == 0:
        raise StageFailed(f"sft_data: no conversation was selected, so there is nothing to train on (pool "
                          f"{stats['pool']}; the judge rejected {stats['label'].get('rejected_by_reason') or 'none'})")
    return {**{k: stats[k] for k in ("selected", "pool", "synth_records", "selected_by_domain",
                                     "selected_by_difficulty", "quality_mean", "sets", "path")},
            "judge": stats["label"].get("judge"), "stand_in_judge": bool(endpoints.stand_ins),
            "rejected_by_reason": stats["label"].get("rejected_by_reason", {})}


# --------------------------------------------------------------------------- SFT


def _sft_records(ctx: StageContext) -> Path | None:
    """SFT data: the embedded math problems as chats in the GSM8K task's own zero-shot prompt
    (and the real SFT seeds with --data-dir)."""
    from infir.eval.tasks import get_task

    to_chat = get_task("gsm8k", "chat").to_chat
    assert to_chat is not None
    path = ctx.stage_dir("sft") / "data" / "math_chats.jsonl"
    source = ctx.stage_dir("corpus") / "math_train.jsonl"
    rows = [{"messages": to_chat(json.loads(line)), "domain": "math"}
            for line in (source.read_text().splitlines() if source.exists() else [])]
    if not rows:
        return None
    write_jsonl(path, rows)
    return path


def sft_inputs(ctx: StageContext) -> list[Path]:
    """What SFT trains on: the sft_data stage's mixture when the recipe has one; else the embedded math chats (and
    the real SFT files with --data-dir) plus the synth stage's records."""
    if ctx.recipe.sft_data is not None:
        return [ctx.stage_dir("sft_data") / "mixture.jsonl"]
    data = [p for p in [_sft_records(ctx)] if p is not None]
    if ctx.data_dir and ctx.recipe.corpus is not None:
        data += [ctx.data_dir / rel for rel in ctx.recipe.corpus.data_dir_sft_files if (ctx.data_dir / rel).exists()]
    if ctx.recipe.synth is not None:
        data.append(ctx.stage_dir("synth") / "sft.jsonl")
    return data


def _require_data(stage: str, files: list[Path], sources: list[Any]) -> None:
    if not sources and not any(p.exists() and p.stat().st_size > 0 for p in files):
        raise StageFailed(f"{stage}: no training data ({', '.join(map(str, files)) or 'no files'} "
                          "empty or missing): refusing to train on nothing")


def run_sft_stage(ctx: StageContext) -> dict[str, Any]:
    from infir.sft.train import run_sft

    data = sft_inputs(ctx)
    _require_data("sft", data, ctx.recipe.sft.sources)
    base = ctx.model_dir(model_stage(ctx.recipe, "sft"))
    try:
        return run_sft(ctx.recipe.sft, base_model=base, data=data, output=ctx.stage_dir("sft"))
    except ValueError as e:
        if str(e).startswith("SFT: no usable"):
            raise StageFailed(f"sft: {e}") from e
        raise


# --------------------------------------------------------------------------- long CoT (paper App. D)


def check_long_cot_data(ctx: StageContext) -> None:
    cfg = ctx.recipe.long_cot_data
    check_source(ctx, cfg.reference.source, "long_cot_data.reference.source", "long_cot_data")
    if cfg.judge is not None:
        check_source(ctx, cfg.judge.source, "long_cot_data.judge.source", "long_cot_data")
    input_files(ctx, cfg.pool, "long_cot_data.pool")
    if cfg.distil is not None:
        check_source(ctx, cfg.distil.teacher.source, "long_cot_data.distil.teacher.source", "long_cot_data")
        input_files(ctx, cfg.distil.seeds, "long_cot_data.distil.seeds")
        if cfg.distil.embedded_seeds and (ctx.recipe.corpus is None or ctx.recipe.corpus.builtin is None):
            raise RecipeError("long_cot_data.distil.embedded_seeds needs the embedded corpus (corpus.builtin)")
    if not cfg.pool and (cfg.distil is None or not (cfg.distil.seeds or cfg.distil.embedded_seeds)):
        raise RecipeError("long_cot_data: no traces: list trace files in long_cot_data.pool or distil some "
                          "(long_cot_data.distil with seeds)")


def run_long_cot_data_stage(ctx: StageContext) -> dict[str, Any]:
    """Long traces (files, and/or distilled from a teacher) with the s1 labels computed: solved by the reference
    model, domain, trace length (infir.synth.long_cot)."""
    from infir.synth.long_cot import build_long_cot_pool
    from infir.synth.seeds import read_seeds
    from infir.synth.stage import StepIncomplete
    from infir.synth.teacher import TeacherError

    cfg = ctx.recipe.long_cot_data
    out = ctx.stage_dir("long_cot_data")
    pool = input_files(ctx, cfg.pool, "long_cot_data.pool")
    seeds: list[dict] = []
    if cfg.distil is not None:
        files = input_files(ctx, cfg.distil.seeds, "long_cot_data.distil.seeds")
        if cfg.distil.embedded_seeds:
            files.append(out / "seeds" / "embedded_problems.jsonl")
            rows = embedded_problems(ctx, cfg.distil.embedded_seeds, "long_cot_data.distil.embedded_seeds")
            write_jsonl(files[-1], rows)
        if files:
            found, _ = read_seeds(files)
            seeds = [{"id": s["id"], "problem": s["instruction"], "reference_answer": s["reference_answer"],
                      "fields": {}} for s in found]
    with contextlib.ExitStack() as stack:
        endpoints = Endpoints(ctx, stack)
        specs = {"distil": endpoints.resolve(cfg.distil.teacher.source, "long_cot_data.distil.teacher")
                 if cfg.distil is not None else None,
                 "reference": endpoints.resolve(cfg.reference.source, "long_cot_data.reference"),
                 "judge": endpoints.resolve(cfg.judge.source, "long_cot_data.judge") if cfg.judge else None}
        try:
            stats = build_long_cot_pool(cfg, pool, seeds, specs, out)
        except (TeacherError, StepIncomplete) as e:
            raise StageFailed(f"long_cot_data: {e}") from e
    if stats["records"] == 0:
        rejected = (stats.get("distil") or {}).get("rejected_by_reason") or {}
        raise StageFailed(f"long_cot_data: no trace is left to train on (pool files {len(pool)}, quarantined "
                          f"{stats['quarantined']}, distillation rejected {rejected or 'none'})")
    return {**{k: stats[k] for k in ("records", "solved", "by_domain", "trace_length", "quarantined", "path")},
            "reference": stats["solve_step"]["reference"], "judge": stats["domain_step"]["judge"],
            "stand_ins": endpoints.stand_ins,
            "distilled": (stats.get("distil") or {}).get("kept"),
            "distil_rejected": (stats.get("distil") or {}).get("rejected_by_reason")}


def run_long_cot_stage(ctx: StageContext) -> dict[str, Any]:
    """Long-CoT SFT (paper App. D) continues from the instruct model on the long_cot_data stage's traces (and any
    files in `sources`); `selection.s1_subset` picks the s1-style subset on the computed labels."""
    from infir.sft.train import run_sft

    cfg = ctx.recipe.long_cot
    data = [ctx.stage_dir("long_cot_data") / "traces.jsonl"] if ctx.recipe.long_cot_data is not None else []
    if not cfg.sources and not data:
        raise ValueError("long_cot: add a long_cot_data stage or list the long reasoning traces under "
                         "long_cot.sources")
    _require_data("long_cot", data, cfg.sources)
    base = ctx.model_dir(model_stage(ctx.recipe, "long_cot"))
    try:
        return run_sft(cfg, base_model=base, data=data, output=ctx.stage_dir("long_cot"))
    except ValueError as e:
        if str(e).startswith("SFT: no usable"):
            raise StageFailed(f"long_cot: {e}") from e
        raise


# --------------------------------------------------------------------------- eval (Tables 1, 2, 6)


def _missing_data(task_name: str, mode: str, data_dir: Path) -> str | None:
    """Why a task's local files are absent under data_dir (None: present, or the task names none)."""
    from infir.eval.tasks import get_task

    source = get_task(task_name, mode).source
    if source is None:
        return None
    if any(source.path(data_dir, split) is not None for split in source.files):
        return None
    wanted = sorted({rel for rels in source.files.values() for rel in rels})
    return f"its data is not under {data_dir} ({' or '.join(wanted)})"


def check_eval(ctx: StageContext, name: str) -> None:
    from infir.eval.tasks import get_task

    cfg = getattr(ctx.recipe, name)
    for task in [*cfg.tasks, *cfg.real_data_tasks]:
        try:
            get_task(task, cfg.mode)
        except KeyError as e:
            raise RecipeError(f"{name}.tasks: {e.args[0]}") from None


def run_eval_named(ctx: StageContext, name: str) -> dict[str, Any]:
    """Evaluate the stage's model on `tasks` (+ `real_data_tasks` with --data-dir, those whose files are absent
    listed as not run); the summary records the protocol the paper tables compare against."""
    from infir.eval.runner import run_eval
    from infir.run.paper_tables import shots

    cfg = getattr(ctx.recipe, name)
    source = model_stage(ctx.recipe, name)
    tasks, not_run = list(cfg.tasks), {}
    if ctx.data_dir:
        for task in cfg.real_data_tasks:
            if task not in tasks:
                reason = _missing_data(task, cfg.mode, ctx.benchmarks_dir)
                if reason:
                    not_run[task] = reason
                else:
                    tasks.append(task)
    try:
        results = run_eval(ctx.model_dir(source), tasks, data_dir=ctx.benchmarks_dir, output=ctx.stage_dir(name),
                           limit=cfg.limit, mode=cfg.mode, max_new_tokens=cfg.max_new_tokens)
    except FileNotFoundError as e:
        raise StageFailed(f"{name}: {e}") from e
    protocol = {"mode": cfg.mode, "limit": cfg.limit, "max_new_tokens": cfg.max_new_tokens,
                "data": "real" if ctx.data_dir else "embedded", "data_dir": str(ctx.benchmarks_dir),
                "shots": {t: shots(t, cfg.mode) for t in tasks}}
    return {"model_stage": source, "tasks": results, "not_run": not_run, "protocol": protocol}


def run_eval_base_stage(ctx: StageContext) -> dict[str, Any]:
    """Table 1: the base model (after annealing), few-shot."""
    return run_eval_named(ctx, "eval_base")


def run_eval_stage(ctx: StageContext) -> dict[str, Any]:
    """Table 2 in chat mode (the instruct model, zero-shot); any model and mode the recipe says."""
    return run_eval_named(ctx, "eval")


def run_eval_long_cot_stage(ctx: StageContext) -> dict[str, Any]:
    """Table 6: the long-CoT model, zero-shot, long generations."""
    return run_eval_named(ctx, "eval_long_cot")


# --------------------------------------------------------------------------- the VLM (paper §4) and Table 3


def check_vlm(ctx: StageContext) -> None:
    cfg = ctx.recipe.vlm
    if cfg.lm is not None and not (Path(cfg.lm) / "config.json").is_file():
        raise RecipeError(f"vlm.lm: {cfg.lm} is not a model folder (no config.json)")
    path = cfg.vision.path
    if path is not None and (Path(path).is_absolute() or str(path).startswith(".")) and not Path(path).is_dir():
        raise RecipeError(f"vlm.vision.path: {path} does not exist (a local SigLIP folder, or a hub id such as "
                          "google/siglip-so400m-patch14-384)")


def run_vlm_stage(ctx: StageContext) -> dict[str, Any]:
    """InfiR-VL (§4.3): SigLIP tower + MLP projector + the base LM, curriculum stages 1-3, grounding eval
    (infir.vlm.pipeline.run_vlm). With --data-dir the real ScreenSpot screenshots there are evaluated too."""
    from infir.vlm.pipeline import run_vlm

    cfg = ctx.recipe.vlm
    lm = Path(cfg.lm) if cfg.lm else ctx.model_dir(model_stage(ctx.recipe, "vlm"))
    real = ctx.data_dir / "screenspot" / "images" if ctx.data_dir else None
    if cfg.eval.screenspot_dir is None and real is not None and (real / "annotations.jsonl").exists():
        cfg = cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"screenspot_dir": real})})
    metrics = run_vlm(cfg, lm, ctx.stage_dir("vlm"))
    tune = {st.name: {"vision": st.vision, "projector": st.projector, "lm": st.lm} for st in cfg.stages}
    stages = [{"stage": s.get("stage"), "steps": s.get("steps"), "examples": s.get("examples"),
               "loss_first": s.get("loss_first"), "loss_last": s.get("loss_last"), "seconds": s.get("seconds"),
               "tune": tune.get(s.get("stage"), {})} for s in metrics.get("stages", [])]
    out: dict[str, Any] = {"lm": str(lm), "vision": str(cfg.vision.path or f"random {cfg.vision.preset} tower"),
                           "curriculum": stages, "model": str(ctx.stage_dir("vlm") / "model")}
    for key in ("synthetic_grounding", "synthetic_steps", "screenspot_real"):
        if key in metrics:
            out[key] = {k: v for k, v in metrics[key].items() if not isinstance(v, (dict, list))}
    return out


def run_eval_vl_stage(ctx: StageContext) -> dict[str, Any]:
    """Table 3: MMMU on the VLM (the real rows with --data-dir or eval_vl.mmmu_rows, else stand-in questions about
    held-out toy screens), ScreenSpot from the vlm stage's grounding eval, AndroidWorld listed as not runnable."""
    from infir.eval.tasks.mmmu import row_files
    from infir.run.paper_tables import TABLE3
    from infir.vlm.bench import run_mmmu, standin_mmmu_rows

    cfg = ctx.recipe.eval_vl
    out = ctx.stage_dir("eval_vl")
    vlm_dir = ctx.stage_dir("vlm")
    common = dict(image_dirs=tuple(cfg.mmmu_images), max_new_tokens=cfg.max_new_tokens,
                  batch_size=cfg.batch_size, device=cfg.device, split=cfg.mmmu_split)
    if cfg.mmmu_rows is not None or (ctx.data_dir is not None and row_files(ctx.data_dir, cfg.mmmu_split)):
        mmmu = run_mmmu(vlm_dir / "model", out / "mmmu", data_dir=ctx.data_dir, rows=cfg.mmmu_rows,
                        limit=cfg.limit, **common)
        mmmu.update(data="real", source=str(cfg.mmmu_rows or ctx.data_dir / "mmmu"))
    else:
        rows = standin_mmmu_rows(vlm_dir / "data" / "heldout_grounding.json",
                                 out / "standin" / "mmmu_standin.jsonl", cfg.standin_questions, ctx.recipe.seed)
        mmmu = run_mmmu(vlm_dir / "model", out / "mmmu", rows=rows, limit=cfg.limit, **common)
        mmmu.update(data="stand-in", source="MMMU-format questions about the VLM's held-out toy screens")
    vm = read_json(vlm_dir / "metrics.json")
    screenspot: dict[str, Any] = {}
    if "screenspot_real" in vm:
        g = vm["screenspot_real"]
        screenspot = {"accuracy": g["accuracy"], "n": g["n"], "data": "real",
                      "source": "real ScreenSpot screenshots with their annotations"}
    elif "synthetic_grounding" in vm:
        g = vm["synthetic_grounding"]
        screenspot = {"accuracy": g["accuracy"], "n": g["n"], "data": "stand-in",
                      "source": "held-out synthetic screens (toy screens)",
                      "chance_random_click": g.get("chance_random_click"),
                      "chance_random_element": g.get("chance_random_element")}
    androidworld = next(c for c in TABLE3.columns if c.header == "Android World").not_run
    return {"mmmu": mmmu, "screenspot": screenspot, "androidworld": {"not_run": androidworld}}


# --------------------------------------------------------------------------- export for the edge


def check_export(ctx: StageContext) -> None:
    cfg = ctx.recipe.export
    if cfg.model is not None:
        before = [s.name for s in enabled_stages(ctx.recipe)]
        if cfg.model not in _model_stages() or cfg.model not in before:
            raise RecipeError(f"export.model: {cfg.model} is not a text-model stage of this recipe "
                              f"({', '.join(s for s in before if s in _model_stages()) or 'none'})")


def run_export_stage(ctx: StageContext) -> dict[str, Any]:
    """HF folder and GGUF file of a text model (infir.serve.export); the report shows the llama.cpp commands."""
    from infir.serve.config import ExportConfig
    from infir.serve.export import run_export

    cfg = ctx.recipe.export
    source = cfg.model or model_stage(ctx.recipe, "export")
    written = run_export(ctx.model_dir(source), ctx.stage_dir("export"),
                         ExportConfig.model_validate(cfg.model_dump(exclude={"model"})))
    files = {}
    for fmt, path in written.items():
        size = sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file()) if Path(path).is_dir() \
            else Path(path).stat().st_size
        files[fmt] = {"path": str(path), "bytes": size}
    return {"model_stage": source, "files": files}


STAGES: list[StageSpec] = [
    StageSpec("corpus", run_corpus, report="corpus"),
    StageSpec("curate", run_curate_stage, reads=("corpus",), report="curation"),
    StageSpec("tokenizer", run_tokenizer, reads=("curate",)),
    StageSpec("pretrain", run_pretrain_stage, reads=("curate", "tokenizer"), produces="model", report="training"),
    StageSpec("anneal_data", run_anneal_data_stage, reads=("curate", "tokenizer"), report="mixture",
              check=check_anneal_data_stage),
    StageSpec("anneal", run_anneal_stage, reads=("curate", "tokenizer", MODEL), model_from=("pretrain",),
              produces="model", report="training"),
    StageSpec("eval_base", run_eval_base_stage, reads=(MODEL,), model_from=("anneal", "pretrain"), report="table1",
              check=lambda ctx: check_eval(ctx, "eval_base")),
    StageSpec("synth", run_synth_stage, report="synthesis", check=check_synth),
    StageSpec("sft_data", run_sft_data_stage, report="synthesis", check=check_sft_data),
    StageSpec("sft", run_sft_stage, reads=(MODEL,), produces="model", report="training"),
    StageSpec("eval", run_eval_stage, reads=(MODEL,), report="evaluation", check=lambda ctx: check_eval(ctx, "eval")),
    StageSpec("long_cot_data", run_long_cot_data_stage, report="long_cot_data", check=check_long_cot_data),
    StageSpec("long_cot", run_long_cot_stage, reads=(MODEL,), produces="model", report="training"),
    StageSpec("eval_long_cot", run_eval_long_cot_stage, reads=(MODEL,), model_from=("long_cot",), report="table6",
              check=lambda ctx: check_eval(ctx, "eval_long_cot")),
    StageSpec("vlm", run_vlm_stage, reads=(MODEL,), model_from=("anneal", "pretrain"), own_model="lm",
              produces="vlm", report="vlm", check=check_vlm),
    StageSpec("eval_vl", run_eval_vl_stage, reads=("vlm",), report="table3"),
    StageSpec("export", run_export_stage, reads=(MODEL,), report="export", check=check_export),
]
