"""`infir vlm ...` subcommands. Imports heavy modules inside the functions."""

from __future__ import annotations

import json
from pathlib import Path

import typer

app = typer.Typer(no_args_is_help=True)


@app.command("data")
def data_command(
    config: Path = typer.Argument(..., help="VLM config YAML, e.g. recipes/tiny-vl.yaml."),
    output: Path = typer.Option(Path("runs/vlm/data"), "--output", "-o", help="Data folder to write."),
    overrides: list[str] = typer.Option([], "--set", help="Override a config field: key=value (repeatable)."),
) -> None:
    """Render synthetic screens and text images, load LLaVA JSON, clean by image-text similarity."""
    from infir.vlm.config import load_vlm_config
    from infir.vlm.pipeline import build_data

    summary = build_data(load_vlm_config(config, overrides), output)
    typer.echo(json.dumps(summary, indent=2))


@app.command("train")
def train_command(
    config: Path = typer.Argument(..., help="VLM config YAML, e.g. recipes/tiny-vl.yaml."),
    lm: Path | None = typer.Option(None, "--lm", help="LM folder (infir / HF Llama or Qwen2, with tokenizer); "
                                   "default: the config's `lm`. Absent both: a random tiny LM is made (toy runs only)."),
    output: Path = typer.Option(Path("runs/vlm"), "--output", "-o", help="Run folder (resumes by stage)."),
    lm_preset: str | None = typer.Option(None, help="Preset of the random LM when --lm is absent "
                                         "(default: the config's toy_lm.preset)."),
    overrides: list[str] = typer.Option([], "--set", help="Override a config field: key=value, e.g. "
                                        "stages.2.optimizer.lr=1e-3 (repeatable)."),
) -> None:
    """Build the data, train the three curriculum stages, evaluate grounding, save the model."""
    from infir.vlm.config import load_vlm_config
    from infir.vlm.pipeline import build_data, run_vlm
    from infir.vlm.tiny import make_tiny_lm, sample_texts

    cfg = load_vlm_config(config, overrides)
    lm = lm or cfg.lm
    if lm is None:
        lm = output / "lm-init"
        if not (lm / "config.json").exists():
            build_data(cfg, output / "data")
            toy = cfg.toy_lm
            depth = {"num_hidden_layers": toy.num_hidden_layers} if toy.num_hidden_layers else {}
            make_tiny_lm(lm, sample_texts(output / "data"), preset=lm_preset or toy.preset, seed=cfg.runtime.seed,
                         vocab_size=toy.vocab_size, init_std=toy.init_std,
                         text_warmup_steps=toy.text_warmup_steps, **depth)
    metrics = run_vlm(cfg, lm, output)
    g = metrics["synthetic_grounding"]
    typer.echo(f"held-out synthetic grounding accuracy {g['accuracy']:.3f} "
               f"(random click {g['chance_random_click']:.3f}, random element "
               f"{g.get('chance_random_element', float('nan')):.3f}); model in {output / 'model'}")


@app.command("eval")
def eval_command(
    model: Path = typer.Argument(..., help="An InfiR-VL model folder."),
    screenspot: Path | None = typer.Option(None, "--screenspot", help="Folder with annotations.jsonl + images "
                                           "(e.g. ../shared/data/screenspot/images)."),
    data: Path | None = typer.Option(None, "--data", help="A `vlm data` folder: held-out synthetic screens."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write the metrics JSON here."),
    device: str = typer.Option("auto", help="cpu, cuda or auto."),
    batch_size: int = typer.Option(16, help="Generation batch size."),
) -> None:
    """Grounding accuracy (point in box, per platform x text/icon) and step accuracy of a saved model."""
    from infir.utils.io import atomic_write_json
    from infir.vlm.dataset import ImageCache
    from infir.vlm.evaluate import grounding_prompt_sample, load_screenspot, score_grounding, score_steps
    from infir.vlm.generate import generate
    from infir.vlm.model import load_vlm
    from infir.vlm.pipeline import resolve_device
    from infir.vlm.processor import ConversationEncoder

    if screenspot is None and data is None:
        raise typer.BadParameter("give --screenspot and/or --data")
    dev = resolve_device(device)
    vlm, tok = load_vlm(model, device=dev)
    enc = ConversationEncoder(tok, vlm.image_token_id, vlm.num_image_tokens)
    cache = ImageCache(vlm.preprocessing)
    metrics = {}
    sets = []
    if screenspot is not None:
        sets.append(("screenspot_real", load_screenspot(screenspot)))
    if data is not None:
        sets.append(("synthetic_grounding", json.loads((data / "heldout_grounding.json").read_text())))
    for name, records in sets:
        texts = generate(vlm, tok, enc, cache, [grounding_prompt_sample(r) for r in records],
                         batch_size=batch_size, device=dev)
        metrics[name] = score_grounding(records, texts)
    if data is not None and (data / "heldout_trajectory.json").exists():
        steps = json.loads((data / "heldout_trajectory.json").read_text())
        texts = generate(vlm, tok, enc, cache, steps, max_new_tokens=96, batch_size=batch_size, device=dev)
        metrics["synthetic_steps"] = score_steps(steps, texts)
    if output is not None:
        atomic_write_json(output, metrics)
    typer.echo(json.dumps(metrics, indent=2))
