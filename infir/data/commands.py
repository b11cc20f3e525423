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
    inputs: list[Path] = typer.Option(
        ..., "--input", "-i", help="JSONL(.gz/.zst), Parquet, WARC/WET files or folders."
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

    cfg = _load_config(config, overrides)
    stats = run_curate(cfg, inputs, output, benchmarks_dir=benchmarks, executor=executor, workers=workers)
    summary = {k: stats[k] for k in ("input_records", "kept", "quarantined")}
    summary["dropped"] = sum(stats["dropped"].values())
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


@app.command("train-quality")
def train_quality(
    labels: Path = typer.Option(
        ..., "--labels", help='JSONL of {"text": ..., "score": 0-5 (web) or 1-5 (math)}.'
    ),
    out: Path = typer.Option(
        ..., "--out", help="Where the head goes (.json); set quality.web_head/math_head to it."
    ),
    encoder: Path | None = typer.Option(
        None, "--encoder", help="sentence-transformers folder (default: packaged MiniLM)."
    ),
) -> None:
    """Train a FineWeb-Edu style quality head (ridge regression on sentence embeddings)."""
    from infir.data.quality import Encoder, packaged_minilm, train_head
    from infir.utils.io import read_jsonl

    path = encoder or packaged_minilm()
    if path is None:
        typer.echo("no encoder: pass --encoder (a sentence-transformers folder)", err=True)
        raise typer.Exit(code=2)
    rows = list(read_jsonl(labels))
    head = train_head(Encoder(path), [r["text"] for r in rows], [float(r["score"]) for r in rows], out)
    typer.echo(json.dumps({"examples": len(rows), "out": str(out), "range": [head.lo, head.hi]}))
