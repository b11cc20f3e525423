"""The stages `infir run` walks, declared as data: `STAGES`, in order, one `StageSpec` each.

A spec says which recipe section switches the stage on, what it reads (earlier stages' folders, or "the model"
of the latest model-producing stage it names), whether it produces a model (`<stage>/model/`, an HF folder),
which section of the report shows it, and which function runs it — a thin adapter onto one room's public
function. A stage writes only into its own folder (`runs/<name>/<stage>/`); the dict it returns is its summary
in the manifest and the report. A new stage is its recipe section (`infir.run.recipe.Recipe`) plus one spec.
"""

from __future__ import annotations

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


ReportSection = Literal["corpus", "curation", "mixture", "training", "evaluation"]
MODEL = "model"  # in `reads`: the model of the latest earlier model-producing stage (see `model_from`)


@dataclass(frozen=True)
class StageSpec:
    """One stage of `infir run`.

    name: the stage's folder, and the recipe section that configures it (`section` when different).
    always: runs whether or not the recipe has its section (the corpus).
    reads: earlier stages whose folders it reads; MODEL = a model from an earlier stage (`model_from`).
    model_from: the stages whose model it takes, latest enabled first (empty: any model-producing stage).
    produces: "model" when it writes `<stage>/model/`.
    report: the report section that shows it (infir.run.report renders each kind).
    """

    name: str
    run: Callable[[StageContext], dict[str, Any]]
    section: str | None = None
    always: bool = False
    reads: tuple[str, ...] = ()
    model_from: tuple[str, ...] = ()
    produces: Literal["model"] | None = None
    report: ReportSection | None = None

    @property
    def recipe_section(self) -> str:
        return self.section or self.name

    def enabled(self, recipe: Recipe) -> bool:
        return self.always or getattr(recipe, self.recipe_section, None) is not None


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
        raise RecipeError(f"stage {stage} reads a model, but no earlier stage of this recipe produces one: "
                          f"add {need} before it")
    return producers[-1]


def check_plan(recipe: Recipe, stages: Sequence[StageSpec] | None = None) -> None:
    """Before any work: every enabled stage finds what it reads among the enabled stages before it."""
    order = list(stages) if stages is not None else enabled_stages(recipe)
    seen: list[str] = []
    for st in order:
        for need in st.reads:
            if need == MODEL:
                if getattr(getattr(recipe, st.recipe_section, None), "init_from", None):
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


def run_sft_stage(ctx: StageContext) -> dict[str, Any]:
    from infir.sft.train import run_sft

    data = [p for p in [_sft_records(ctx)] if p is not None]
    if ctx.data_dir:
        data += [ctx.data_dir / rel for rel in ctx.recipe.corpus.data_dir_sft_files if (ctx.data_dir / rel).exists()]
    base = ctx.model_dir(model_stage(ctx.recipe, "sft"))
    return run_sft(ctx.recipe.sft, base_model=base, data=data, output=ctx.stage_dir("sft"))


def run_long_cot_stage(ctx: StageContext) -> dict[str, Any]:
    """Long-CoT SFT (paper App. D) continues from the instruct model on the long traces in `sources`."""
    from infir.sft.train import run_sft

    cfg = ctx.recipe.long_cot
    if not cfg.sources:
        raise ValueError("long_cot: list the long reasoning traces under long_cot.sources")
    base = ctx.model_dir(model_stage(ctx.recipe, "long_cot"))
    return run_sft(cfg, base_model=base, data=[], output=ctx.stage_dir("long_cot"))


# --------------------------------------------------------------------------- eval


def run_eval_stage(ctx: StageContext) -> dict[str, Any]:
    from infir.eval.runner import run_eval

    cfg = ctx.recipe.eval
    model = ctx.model_dir(model_stage(ctx.recipe, "eval"))
    tasks = cfg.tasks + ([t for t in cfg.real_data_tasks if t not in cfg.tasks] if ctx.data_dir else [])
    return run_eval(model, tasks, data_dir=ctx.benchmarks_dir, output=ctx.stage_dir("eval"),
                    limit=cfg.limit, mode=cfg.mode, max_new_tokens=cfg.max_new_tokens)


STAGES: list[StageSpec] = [
    StageSpec("corpus", run_corpus, always=True, report="corpus"),
    StageSpec("curate", run_curate_stage, reads=("corpus",), report="curation"),
    StageSpec("tokenizer", run_tokenizer, reads=("curate",)),
    StageSpec("pretrain", run_pretrain_stage, reads=("curate", "tokenizer"), produces="model", report="training"),
    StageSpec("anneal_data", run_anneal_data_stage, reads=("curate", "tokenizer"), report="mixture"),
    StageSpec("anneal", run_anneal_stage, reads=("curate", "tokenizer", MODEL), model_from=("pretrain",),
              produces="model", report="training"),
    StageSpec("sft", run_sft_stage, reads=(MODEL,), produces="model", report="training"),
    StageSpec("long_cot", run_long_cot_stage, reads=(MODEL,), produces="model", report="training"),
    StageSpec("eval", run_eval_stage, reads=(MODEL,), report="evaluation"),
]
