"""`infir eval` command. Imports heavy modules inside the function."""

from __future__ import annotations

from pathlib import Path

import typer


def eval_command(
    model: str = typer.Option(..., "--model", help="Model folder (infir or HF) or OpenAI-compatible URL."),
    tasks: str = typer.Option(
        "gsm8k,math500,humaneval,mbpp,mmlu",
        "--tasks",
        help="Comma-separated task names: nll, gsm8k, math, math500, humaneval, mbpp, mmlu, aime24, amc23, "
        "olympiadbench, gpqa, ... plus those of --tasks-dir / INFIR_TASKS_PATH.",
    ),
    tasks_dir: list[Path] = typer.Option(
        [], "--tasks-dir", help="A folder of your own task files (*.py defining TASK); repeatable."
    ),
    data_dir: Path | None = typer.Option(
        None,
        "--data-dir",
        help="Benchmarks in the shared/data layout (default: $INFIR_SHARED_DATA, else the Hugging Face hub).",
    ),
    output: Path = typer.Option(..., "--output", help="Folder for samples, summary.json and results.md."),
    limit: int | None = typer.Option(
        None, "--limit", help="First N samples per task (per subject for MMLU)."
    ),
    mode: str = typer.Option(
        "base", "--mode", help="base: few-shot prompts; chat: zero-shot with the chat template."
    ),
    max_new_tokens: int = typer.Option(
        256, "--max-new-tokens", help="Generation budget (long-CoT: e.g. 16384)."
    ),
    num_samples: int = typer.Option(1, "--num-samples", help="Completions per problem (pass@k when > 1)."),
    temperature: float = typer.Option(0.0, "--temperature", help="0 = greedy."),
    top_p: float = typer.Option(1.0, "--top-p"),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Evaluate a model on MMLU, GSM8K, MATH, HumanEval, MBPP and the long-CoT sets."""
    import httpx

    from infir.eval.runner import run_eval
    from infir.eval.tasks.base import default_data_dir

    if mode not in ("base", "chat"):
        raise typer.BadParameter("--mode must be base or chat")
    if num_samples > 1 and temperature <= 0:
        raise typer.BadParameter("--num-samples > 1 needs --temperature > 0 (greedy samples are identical)")
    names = [t.strip() for t in tasks.split(",") if t.strip()]
    try:
        from infir.eval.tasks import add_tasks_dir

        for folder in tasks_dir:
            add_tasks_dir(folder)
        summary = run_eval(
            model,
            names,
            data_dir or default_data_dir(),
            output,
            limit=limit,
            mode=mode,
            max_new_tokens=max_new_tokens,
            num_samples=num_samples,
            temperature=temperature,
            top_p=top_p,
            seed=seed,
        )
    except (FileNotFoundError, ImportError, KeyError, RuntimeError, ValueError, httpx.HTTPError) as e:
        typer.echo(f"infir eval: {e}", err=True)
        raise typer.Exit(code=1) from e
    typer.echo((output / "results.md").read_text())
    typer.echo(f"{len(summary)} task(s) evaluated; details in {output}")
