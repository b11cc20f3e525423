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


@app.command("mix")
def mix(
    sources: list[str] = typer.Option(..., "--source", "-s", help="NAME=PATH:WEIGHT, e.g. code=out/code:1.0"),
    output: Path = typer.Option(..., "--output", "-o", help="Output folder."),
    tokenizer: Path | None = typer.Option(None, "--tokenizer", help="Tokenizer folder: write token shards."),
    total_docs: int | None = typer.Option(None, "--total-docs", help="Documents in the mix (default: all)."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Build the annealing mix (paper §2.2) by source weights; tokenized shards when a tokenizer is given."""
    from infir.data.mixture import MixSource, build_mix

    parsed = []
    for spec in sources:
        name, _, rest = spec.partition("=")
        path, _, weight = rest.rpartition(":")
        parsed.append(MixSource(name=name, path=Path(path), weight=float(weight)))
    stats = build_mix(parsed, output, tokenizer_path=tokenizer, total_docs=total_docs, seed=seed)
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
