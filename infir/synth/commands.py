"""`infir synth` command. Imports heavy modules inside the function."""

from __future__ import annotations

from pathlib import Path

import typer


def synth_command(
    seeds: list[Path] = typer.Option(..., "--seeds", help="Seed files or folders (Alpaca, ShareGPT, messages, "
                                                           "GSM8K/MATH jsonl); repeat for several."),
    teacher: str | None = typer.Option(None, "--teacher", help="OpenAI-compatible URL (http://host:port/v1) or a "
                                       "local model folder (default: the config's teacher.source)."),
    output: Path = typer.Option(..., "--output", "-o", help="Output folder (sft.jsonl, stats.json, steps/)."),
    config: Path | None = typer.Option(None, "--config", "-c", help="SynthConfig YAML (defaults: paper settings)."),
    model: str | None = typer.Option(None, "--model", help="Teacher model name (overrides the config)."),
    candidates: int | None = typer.Option(None, "--candidates", help="Responses per instruction (N)."),
    reward_model: Path | None = typer.Option(None, "--reward-model", help="Local HF reward model folder."),
    max_seeds: int | None = typer.Option(None, "--max-seeds", help="Read at most this many seeds."),
    max_records: int | None = typer.Option(None, "--max-records", help="Diversity-sample at most this many."),
    overrides: list[str] = typer.Option([], "--set", help="Override a config field: key=value (repeatable)."),
) -> None:
    """Synthesise and verify SFT data with a teacher; resumable (rerun the same command after a crash)."""
    import json

    from infir.synth.config import load_synth_config
    from infir.synth.pipeline import run_synth
    from infir.synth.stage import StepIncomplete
    from infir.synth.teacher import TeacherError

    cfg = load_synth_config(config, overrides)
    teacher = teacher or cfg.teacher.source
    if teacher is None or teacher == "scripted":
        raise typer.BadParameter("give --teacher URL|DIR (or teacher.source in the config); the `scripted` stand-in "
                                 "runs inside `infir run` only", param_hint="--teacher")
    if model is not None:
        cfg.teacher.model = model
    if candidates is not None:
        cfg.respond.candidates = candidates
    if reward_model is not None:
        cfg.reject.reward_model = reward_model
    if max_seeds is not None:
        cfg.max_seeds = max_seeds
    if max_records is not None:
        cfg.select.max_records = max_records
    try:
        stats = run_synth(cfg, seeds, teacher, output)
    except (StepIncomplete, TeacherError, ValueError, FileNotFoundError) as e:
        typer.echo(f"infir synth: {e}", err=True)
        raise typer.Exit(code=1) from e
    typer.echo(json.dumps({"records": stats["output"]["records"], "output": stats["output"]["path"],
                           "teacher_requests": stats["teacher"]["requests"],
                           "cache_hits": stats["teacher"]["cache_hits"]}))
