"""`infir train sft`: supervised fine-tuning (and long-CoT SFT) from a recipe. Heavy imports stay inside.

    infir train sft --recipe recipes/infir-1b-sft.yaml --base-model runs/x/anneal/model \\
                    --data seeds/alpaca.json --data synth/math.jsonl --output runs/x/sft
    infir train sft --recipe recipes/infir-1b-sft.yaml --long-cot --base-model runs/x/sft/model \\
                    --data numina_qwq.jsonl --output runs/x/long-cot
    torchrun --nproc_per_node 8 -m infir.cli train sft ...      (FSDP2 over 8 GPUs)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import typer


def load_sft_config(recipe: Path | None, section: str, long_cot: bool, overrides: list[str]) -> Any:
    """SFTConfig from a recipe's `section` (or a file that is an SFTConfig itself), plus key=value overrides."""
    import yaml

    from infir.sft.config import SFTConfig

    data: dict[str, Any] = {}
    if recipe is not None:
        if not recipe.is_file():
            raise typer.BadParameter(f"recipe not found: {recipe}")
        raw = yaml.safe_load(recipe.read_text()) or {}
        if not isinstance(raw, dict):
            raise typer.BadParameter(f"{recipe}: expected a mapping")
        if long_cot and "long_cot" in raw:
            section = "long_cot"
        data = dict(raw.get(section) or {}) if section in raw or "name" in raw else raw
        if long_cot and section != "long_cot":  # the SFT section's lengths give way to long-CoT's
            data.pop("max_length", None)
            data.pop("micro_batch_size", None)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"--set expects key=value, got {item!r}")
        node = data
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = yaml.safe_load(value)
    return SFTConfig.long_cot(**data) if long_cot else SFTConfig.model_validate(data)


def sft_command(
    recipe: Path | None = typer.Option(None, "--recipe", help="Recipe YAML with an 'sft:' section."),
    base_model: Path = typer.Option(..., "--base-model", help="Model folder to fine-tune (HF layout)."),
    data: list[Path] = typer.Option([], "--data", help="SFT file: Alpaca/ShareGPT/OpenAI JSON or JSONL."),
    output: Path = typer.Option(..., "--output", help="Run folder: data/, checkpoints/, model/, summary.json."),
    tokenizer: Path | None = typer.Option(None, "--tokenizer", help="Tokenizer when the model has none."),
    long_cot: bool = typer.Option(False, "--long-cot", help="Long-CoT SFT: max length 16k, from the instruct "
                                  "model ('long_cot:' section when the recipe has one)."),
    section: str = typer.Option("sft", "--section", help="Recipe section holding the SFT config."),
    overrides: list[str] = typer.Option([], "--set", help="Override a config field: key=value (repeatable)."),
) -> None:
    """Supervised fine-tuning with the Llama 3 chat template and loss on assistant tokens only."""
    from pydantic import ValidationError

    from infir.sft.train import run_sft

    try:
        cfg = load_sft_config(recipe, section, long_cot, overrides)
    except ValidationError as e:
        typer.echo(f"invalid SFT config: {e}", err=True)
        raise typer.Exit(code=2) from None
    if not data and not cfg.sources:
        typer.echo("no SFT data: pass --data FILE or list sources in the recipe", err=True)
        raise typer.Exit(code=2)
    missing = [str(p) for p in data if not p.exists()]
    if missing:
        typer.echo(f"SFT data not found: {', '.join(missing)}", err=True)
        raise typer.Exit(code=2)
    summary = run_sft(cfg, base_model=base_model, data=data, output=output, tokenizer=tokenizer)
    if os.environ.get("RANK", "0") == "0":
        keys = ("steps", "total_steps", "samples", "truncated", "quarantined", "heldout_assistant_loss_before",
                "heldout_assistant_loss_after", "model")
        typer.echo(json.dumps({k: summary.get(k) for k in keys}))
