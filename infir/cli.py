"""The `infir` command. Thin: each room owns its subcommands in `<room>/commands.py`."""

from __future__ import annotations

from pathlib import Path

import typer

from infir.data.commands import app as data_app
from infir.eval.commands import eval_command
from infir.serve.commands import chat_command, export_command, serve_command
from infir.sft.commands import sft_command
from infir.synth.commands import synth_command
from infir.train.commands import app as train_app
from infir.vlm.commands import app as vlm_app

app = typer.Typer(
    name="infir",
    help="InfiR recipe: curate a corpus, pretrain, SFT, evaluate and ship small reasoning (V)LMs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command("run")
def run_command(
    recipe: Path = typer.Argument(..., help="Recipe YAML, e.g. recipes/tiny.yaml."),
    from_stage: str | None = typer.Option(None, "--from", help="Rerun from this stage onwards."),
    data_dir: Path | None = typer.Option(
        None, "--data-dir", envvar="INFIR_DATA", help="Folder laid out like shared/data (real files)."
    ),
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", help="Where run directories go."),
    only: str | None = typer.Option(None, "--only", help="Run just these stages (comma-separated)."),
    overlay: list[Path] = typer.Option([], "--overlay", help="YAML deep-merged over the recipe (e.g. a miniature "
                                       "overlay that changes sizes and paths); repeatable, applied in order."),
    overrides: list[str] = typer.Option([], "--set", help="Override a recipe field: key=value, e.g. "
                                        "pretrain.max_steps=10 (repeatable)."),
) -> None:
    """Run a whole recipe stage by stage; finished stages are skipped on rerun."""
    from infir.run import run_recipe

    run_recipe(recipe, runs_dir=runs_dir, from_stage=from_stage, data_dir=data_dir, only=only, overlays=overlay,
               overrides=overrides)


app.add_typer(data_app, name="data", help="Corpus curation: filters, recall, dedup, quality, decontamination.")
train_app.command("sft", help="Supervised fine-tuning (and long-CoT SFT).")(sft_command)
app.add_typer(train_app, name="train", help="Pretrain, anneal, SFT and long-CoT SFT.")
app.command("synth", help="Synthesise and verify SFT data with a teacher.")(synth_command)
app.command("eval", help="Evaluate a model on MMLU, GSM8K, MATH, HumanEval, MBPP, ...")(eval_command)
app.add_typer(vlm_app, name="vlm", help="InfiR-VL: data, three-stage training, grounding eval.")
app.command("serve", help="OpenAI-compatible server for a model folder.")(serve_command)
app.command("chat", help="Interactive terminal chat with a model folder.")(chat_command)
app.command("export", help="Export a model to Hugging Face or GGUF format.")(export_command)


def main() -> None:
    from infir.utils.config import ConfigError

    try:
        app()
    except ConfigError as e:  # a bad config file or --set, on any subcommand: the message, no traceback
        typer.echo(f"infir: {e}", err=True)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
