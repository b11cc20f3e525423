"""`infir train ...` subcommands. Imports heavy modules inside the functions.

    infir train tokenize corpus.jsonl --tokenizer TOK --output data/tokens/web
    infir train pretrain --config recipes/infir-1b.yaml --data-dir data/tokens --tokenizer TOK --output runs/pt
    infir train anneal   --config recipes/infir-1b.yaml --data-dir data/anneal --tokenizer TOK \\
                         --init-from runs/pt/model --output runs/anneal
    torchrun --nproc_per_node 8 -m infir.cli train pretrain ...      (FSDP2 over 8 GPUs)
    infir train sft ...   (the SFT room's command, infir/sft/commands.py, attached by infir/cli.py)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import typer

app = typer.Typer(no_args_is_help=True)


def load_train_config(config: Path | None, section: str, overrides: list[str]) -> Any:
    """A TrainConfig from a YAML file (its `section` key when present, else the whole file) + `--set`."""
    from infir.train.config import TrainConfig
    from infir.utils.config import load_config

    return load_config(TrainConfig, config, section=section, overrides=overrides)


def _run(section: str, config: Path | None, data_dir: Path, output: Path, tokenizer: Path | None,
         init_from: Path | None, overrides: list[str]) -> None:
    from infir.train.pretrain import run_pretrain

    cfg = load_train_config(config, section, overrides)
    summary = run_pretrain(cfg, data_dir, output, tokenizer, init_from=init_from)
    if os.environ.get("RANK", "0") == "0":
        typer.echo(json.dumps({k: summary[k] for k in ("steps", "final_loss", "tokens", "model_dir")}))


CONFIG = typer.Option(None, "--config", help="YAML with TrainConfig fields (or a 'pretrain:'/'anneal:' key).")
DATA = typer.Option(..., "--data-dir", help="Tokenized sources (folders with index.json).")
OUTPUT = typer.Option(..., "--output", help="Run folder: model/, checkpoints/, metrics.jsonl.")
TOKENIZER = typer.Option(None, "--tokenizer", help="Tokenizer folder (saved with the model).")
SET = typer.Option([], "--set", help="Override a config field: key=value, e.g. optimizer.lr=3e-4 (repeatable).")


@app.command("pretrain")
def pretrain_command(config: Path | None = CONFIG, data_dir: Path = DATA, output: Path = OUTPUT,
                     tokenizer: Path | None = TOKENIZER,
                     init_from: Path | None = typer.Option(None, "--init-from", help="Continue from a model folder."),
                     overrides: list[str] = SET) -> None:
    """Pretrain from scratch (or from --init-from); resumes from the output's latest checkpoint."""
    _run("pretrain", config, data_dir, output, tokenizer, init_from, overrides)


@app.command("anneal")
def anneal_command(config: Path | None = CONFIG, data_dir: Path = DATA, output: Path = OUTPUT,
                   tokenizer: Path | None = TOKENIZER,
                   init_from: Path = typer.Option(..., "--init-from", help="The pretrained model folder."),
                   overrides: list[str] = SET) -> None:
    """Anneal: continue a pretrained model on the annealing mixture while the learning rate decays."""
    _run("anneal", config, data_dir, output, tokenizer, init_from, overrides)


@app.command("tokenize")
def tokenize_command(
    inputs: list[Path] = typer.Argument(..., help="JSONL files (.gz/.zst fine) with a text field."),
    tokenizer: Path = typer.Option(..., "--tokenizer"),
    output: Path = typer.Option(..., "--output", help="Source folder to write (index.json + shards)."),
    text_key: str = typer.Option("text", "--text-key"),
) -> None:
    """Tokenize text records into a source folder for pretraining."""
    from infir.data.tokens import write_token_shards
    from infir.model.tokenizer import load_tokenizer
    from infir.utils.io import read_jsonl

    def records():
        for path in inputs:
            yield from read_jsonl(path)

    index = write_token_shards(records(), load_tokenizer(tokenizer), output, text_key=text_key)
    typer.echo(json.dumps({k: index[k] for k in ("documents", "tokens", "quarantined")}))
