"""`infir data ...` subcommands. Imports heavy modules inside the functions."""

from __future__ import annotations

import json
from pathlib import Path

import typer

app = typer.Typer(no_args_is_help=True)


def _load_config(path: Path | None, overrides: list[str]):
    """CurateConfig from a YAML file (or a recipe's `curate:` section) plus `--set` overrides."""
    from infir.data.config import CurateConfig
    from infir.utils.config import load_config

    return load_config(CurateConfig, path, section="curate", overrides=overrides)


@app.command("curate")
def curate(
    inputs: list[str] = typer.Option(
        ..., "--input", "-i",
        help="PATH or PATH:DOMAIN (web, math, code, knowledge, wiki, instruct, other): JSONL(.gz/.zst), JSON, "
        "Parquet, WARC/WET files, folders or globs. Without a domain it is detected from the release format "
        "(Stack rows -> code, OpenWebMath -> math, ...), else curate.default_domain (counted as assumed).",
    ),
    output: Path = typer.Option(..., "--output", "-o", help="Output folder: shards, stats.json, rejects/."),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML with CurateConfig fields (or a recipe)."),
    overrides: list[str] = typer.Option([], "--set", help="Override a config field: key=value (repeatable)."),
    benchmarks: Path | None = typer.Option(
        None,
        "--benchmarks",
        help="Folder laid out like shared/data (gsm8k/, math/, ...) for decontamination.",
    ),
    executor: str = typer.Option("local", "--executor", help="local or ray."),
    workers: int = typer.Option(1, "--workers", "-w", help="Parallel shard workers."),
    tasks_dir: list[Path] = typer.Option(
        [], "--tasks-dir", help="A folder of your own eval task files, decontaminated against when listed in "
        "decontam.benchmarks; repeatable."
    ),
) -> None:
    """Curate a corpus: heuristic filters, MinHash dedup and 10-gram decontamination (paper §2.1)."""
    from infir.data.pipeline import run_curate
    from infir.eval.tasks import add_tasks_dir

    for folder in tasks_dir:
        add_tasks_dir(folder)

    from infir.data.config import InputSpec

    cfg = _load_config(config, overrides)
    try:
        specs = [InputSpec.parse(i) for i in inputs]
        stats = run_curate(cfg, specs, output, benchmarks_dir=benchmarks, executor=executor, workers=workers)
    except ValueError as e:  # bad input or settings, known before any work: say which, exit non-zero
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(code=2) from None
    summary = {k: stats.get(k, 0) for k in ("input_records", "kept", "quarantined", "assumed")}
    summary["dropped"] = sum(stats["dropped"].values())
    summary["by_domain"] = {d: {k: v[k] for k in ("input", "kept", "quarantined")} | {"dropped": sum(
        v["dropped"].values())} for d, v in stats.get("domains", {}).items()}
    typer.echo(json.dumps(summary))


@app.command("anneal")
def anneal(
    config: Path = typer.Option(
        ..., "--config", "-c", help="The mixture: a recipe with an 'anneal_data:' section, or a YAML of its fields "
        "(sources with weights, tokens, max_repeats, ...; infir/data/anneal.py)."),
    output: Path = typer.Option(..., "--output", "-o", help="Output folder: tokens/<source>/ (what `infir train "
                                "anneal --data-dir` reads), mix_stats.json, curate/, count/, plan.json."),
    tokenizer: Path = typer.Option(..., "--tokenizer", help="Tokenizer folder (or tiktoken file): shares are of "
                                   "its tokens."),
    corpus: Path | None = typer.Option(None, "--corpus", help="The curated pretraining corpus (`infir data curate` "
                                       "output), for the sources that select from it."),
    pretrain_tokens: Path | None = typer.Option(
        None, "--pretrain-tokens", help="The pretraining token sources (one folder per domain): the shares that "
        "sources without a weight keep (code, §2.2); by tokens, or by the recipe's pretrain.sources weights."),
    benchmarks: Path | None = typer.Option(
        None, "--benchmarks", help="Folder laid out like shared/data: the eval sets the annealing files are "
        "decontaminated against (as the pretraining corpus was)."),
    tokens: int | None = typer.Option(None, "--tokens", help="Tokens in the mixture (default: anneal_data.tokens, "
                                      "else the largest mixture in which no source repeats)."),
    overlay: list[Path] = typer.Option([], "--overlay", help="YAML deep-merged over --config (e.g. a miniature "
                                       "overlay); repeatable, in order."),
    overrides: list[str] = typer.Option([], "--set", help="Override a field: key=value (repeatable)."),
    tasks_dir: list[Path] = typer.Option([], "--tasks-dir", help="A folder of your own eval task files; repeatable."),
) -> None:
    """Build the annealing mixture of Table 8 (paper §2.2): pretraining-corpus sources (web pages only where recall
    moved them to math or code; code at its pretraining share unless weighted), annealing corpora in their release
    formats, `infir synth` runs; decontaminated; shares of tokens, small sources repeated up to a cap."""
    from infir.data.anneal import AnnealDataConfig, build_anneal_mix, pretraining_shares
    from infir.eval.tasks import add_tasks_dir
    from infir.utils.config import ConfigError, load_config

    for folder in tasks_dir:
        add_tasks_dir(folder)
    try:
        cfg = load_config(AnnealDataConfig, config, section="anneal_data", overlays=overlay, overrides=overrides)
        shares = None
        if pretrain_tokens is not None:  # weighted as the recipe's pretrain.sources weighted them, if it did
            from infir.utils.config import read_yaml

            sources = (read_yaml(config).get("pretrain") or {}).get("sources") or []
            weights = {Path(s["path"]).name: float(s.get("weight", 1.0)) for s in sources if isinstance(s, dict)}
            shares = pretraining_shares(pretrain_tokens, weights or None)
        stats = build_anneal_mix(cfg, output, tokenizer, corpus_dir=corpus, benchmarks_dir=benchmarks,
                                 pretrain=shares, tokens=tokens)
    except (ValueError, ConfigError, FileNotFoundError) as e:  # bad input, known before any work: say which
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(code=2) from None
    typer.echo(json.dumps({"tokens": stats["tokens"], "documents": stats["documents"], "sources": {
        r["source"]: {k: r.get(k) for k in ("share", "configured_share", "tokens", "documents", "capped")}
        for r in stats["sources"]}, "token_dir": stats["token_dir"]}))


@app.command("mix", deprecated=True)
def mix(
    sources: list[str] = typer.Option(..., "--source", "-s", help="NAME=PATH:WEIGHT, e.g. code=out/code:1.0"),
    output: Path = typer.Option(..., "--output", "-o", help="Output folder."),
    tokenizer: Path | None = typer.Option(None, "--tokenizer", help="Tokenizer folder: write token shards."),
    total_docs: int | None = typer.Option(None, "--total-docs", help="Documents in the mix (default: all)."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Deprecated: use `infir data anneal` (Table 8's mixture: shares of tokens, decontamination, capped repeats,
    the pretraining corpus's web rule). Samples documents by per-source ratios; tokenized shards with a tokenizer."""
    from infir.data.mixture import MixSource, build_mix

    typer.echo("infir data mix is deprecated: use `infir data anneal` (shares of tokens, decontaminated sources, "
               "capped repeats, synth runs); see `infir data anneal --help`", err=True)
    parsed = []
    for spec in sources:
        name, _, rest = spec.partition("=")
        path, _, weight = rest.rpartition(":")
        try:
            parsed.append(MixSource(name=name, path=Path(path), weight=float(weight)))
        except ValueError:
            typer.echo(f"error: --source {spec!r}: expected NAME=PATH:WEIGHT", err=True)
            raise typer.Exit(code=2) from None
    try:
        stats = build_mix(parsed, output, tokenizer_path=tokenizer, total_docs=total_docs, seed=seed)
    except ValueError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(code=2) from None
    typer.echo(json.dumps(stats))


@app.command("annotate-quality")
def annotate_quality(
    inputs: list[str] = typer.Option(..., "--input", "-i", help="PATH or PATH:DOMAIN, as for curate."),
    teacher: str = typer.Option(..., "--teacher", help="OpenAI-compatible URL (infir serve, vLLM, ...)."),
    out: Path = typer.Option(..., "--out", help="Labels JSONL ({text, score, rubric, answer})."),
    rubric: str = typer.Option("edu", "--rubric", help="edu (FineWeb-Edu, additive 0-5) or math (FineMath, 1-5)."),
    model: str | None = typer.Option(None, "--model", help="Model name at the endpoint (default: its first)."),
    sample: int = typer.Option(1000, "--sample", help="Texts drawn uniformly from the inputs."),
    domain: list[str] = typer.Option([], "--domain", help="Only records of these domains (repeatable)."),
    seed: int = typer.Option(0, "--seed"),
    concurrency: int = typer.Option(8, "--concurrency"),
) -> None:
    """Label a uniform sample of the corpus with a teacher model (FineWeb-Edu or FineMath rubric)."""
    from infir.data.annotate import annotate_corpus
    from infir.data.config import CurateConfig, InputSpec
    from infir.data.readers import expand_inputs, read_path
    from infir.data.records import Record
    from infir.data.sources import resolve_inputs

    cfg = CurateConfig()
    try:
        specs = resolve_inputs([InputSpec.parse(i) for i in inputs])
    except ValueError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(code=2) from None

    def texts():
        for spec in specs:
            for _, files, root in expand_inputs([spec]):
                for f in files:
                    for item in read_path(f, cfg.max_doc_chars, root, spec, cfg.default_domain):
                        if isinstance(item, Record) and (not domain or item.domain in domain):
                            yield item.text

    summary = annotate_corpus(texts(), teacher, rubric, out, model=model, sample=sample, seed=seed,
                              concurrency=concurrency)
    typer.echo(json.dumps(summary))


@app.command("train-quality")
def train_quality(
    labels: Path = typer.Option(
        ..., "--labels", help='JSONL of {"text": ..., "score": 0-5 (edu) or 1-5 (math)} (annotate-quality writes it).'
    ),
    out: Path = typer.Option(
        ..., "--out", help="The scorer folder (transformers); set quality.edu.model / quality.math.model to it."
    ),
    encoder: str = typer.Option(
        "Snowflake/snowflake-arctic-embed-m", "--encoder", "--base",
        help="Base encoder (folder or hub id); FineWeb-Edu's classifier was trained on this one.",
    ),
    max_length: int = typer.Option(512, "--max-length"),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Train a FineWeb-Edu/FineMath-architecture scorer (sequence-classification regression head on a frozen
    encoder) from labelled texts."""
    from infir.data.quality import train_scorer
    from infir.utils.io import read_jsonl

    rows = list(read_jsonl(labels))
    bad = [i for i, r in enumerate(rows) if not isinstance(r.get("text"), str) or
           not isinstance(r.get("score"), (int, float))]
    if bad:
        typer.echo(f"error: {labels}: rows {bad[:5]} lack a text string or a numeric score", err=True)
        raise typer.Exit(code=2)
    metrics = train_scorer(encoder, [r["text"] for r in rows], [float(r["score"]) for r in rows], out,
                           max_length=max_length, seed=seed)
    typer.echo(json.dumps(metrics))
