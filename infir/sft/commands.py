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


def load_sft_config(recipe: Path | None, section: str, long_cot: bool, overrides: list[str],
                    overlays: list[Path] | None = None) -> Any:
    """SFTConfig from a recipe's `section` (or a file that is an SFTConfig itself), plus key=value overrides.

    With --long-cot: the recipe's `long_cot:` section when it has one; else its SFT section with long-CoT's
    lengths (16k, micro-batch 1) in place of the SFT ones.
    """
    from infir.sft.config import LONG_COT_DEFAULTS, SFTConfig
    from infir.utils.config import apply_overrides, deep_merge, load_config, read_yaml, validate

    if not long_cot:
        return load_config(SFTConfig, recipe, section=section, overlays=overlays or (), overrides=overrides)
    doc = read_yaml(recipe) if recipe is not None else {}
    for extra in overlays or ():
        doc = deep_merge(doc, read_yaml(extra))
    if isinstance(doc.get("long_cot"), dict):
        data = doc["long_cot"]
    else:
        data = dict(doc.get(section) or {}) if (section in doc or "name" in doc) else doc
        for key in LONG_COT_DEFAULTS:  # the SFT section's lengths give way to long-CoT's
            data.pop(key, None)
    data = apply_overrides({**LONG_COT_DEFAULTS, **data}, overrides)
    return validate(SFTConfig, data, f"config {recipe} (long-CoT SFT)" if recipe else "long-CoT SFT config")


def sft_command(
    recipe: Path | None = typer.Option(None, "--recipe", help="Recipe YAML with an 'sft:' section."),
    base_model: Path = typer.Option(..., "--base-model", help="Model folder to fine-tune (HF layout)."),
    data: list[Path] = typer.Option([], "--data", help="SFT file: Alpaca/ShareGPT/OpenAI JSON or JSONL."),
    output: Path = typer.Option(..., "--output", help="Run folder: data/, checkpoints/, model/, summary.json."),
    tokenizer: Path | None = typer.Option(None, "--tokenizer", help="Tokenizer when the model has none."),
    long_cot: bool = typer.Option(False, "--long-cot", help="Long-CoT SFT: max length 16k, from the instruct "
                                  "model ('long_cot:' section when the recipe has one)."),
    section: str = typer.Option("sft", "--section", help="Recipe section holding the SFT config."),
    overlay: list[Path] = typer.Option([], "--overlay", help="YAML deep-merged over the recipe (e.g. "
                                       "recipes/mini/infir-1b-sft.mini.yaml); repeatable, in order."),
    overrides: list[str] = typer.Option([], "--set", help="Override a config field: key=value (repeatable)."),
) -> None:
    """Supervised fine-tuning with the Llama 3 chat template and loss on assistant tokens only."""
    from infir.sft.train import run_sft

    cfg = load_sft_config(recipe, section, long_cot, overrides, overlay)
    if not data and not cfg.sources:
        typer.echo("no SFT data: pass --data FILE or list sources in the recipe", err=True)
        raise typer.Exit(code=2)
    missing = [str(p) for p in data if not p.exists()]
    for src in cfg.sources:
        try:
            missing += [str(p) for p in src.files() if not p.exists()]
        except FileNotFoundError as e:
            missing.append(str(e))
    if missing:
        typer.echo(f"SFT data not found: {', '.join(missing)}", err=True)
        raise typer.Exit(code=2)
    summary = run_sft(cfg, base_model=base_model, data=data, output=output, tokenizer=tokenizer)
    if os.environ.get("RANK", "0") == "0":
        keys = ("steps", "total_steps", "samples", "truncated", "quarantined", "heldout_assistant_loss_before",
                "heldout_assistant_loss_after", "model")
        typer.echo(json.dumps({k: summary.get(k) for k in keys}))
