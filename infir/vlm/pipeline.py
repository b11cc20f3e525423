"""The InfiR-VL stage of a recipe: data -> three curriculum stages -> grounding / step evaluation.

`run_vlm(cfg, lm_dir, output)` is what `infir vlm train` and the `vlm` stage of `infir run` call. Output folder:

    data/            rendered images, samples per kind (LLaVA JSON), quarantine, cleaning report
    stages/<name>/   the model after each stage (resume: a finished stage is loaded, not retrained)
    model/           the final InfiR-VL folder (see infir.vlm.model)
    metrics.json     per-stage training summaries (loss curve, held-out checks) and evaluation numbers
    training.png     loss per stage and the held-out grounding checks (stages with eval_every)
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from infir.model import registry
from infir.model.hf_io import load_model
from infir.model.tokenizer import load_tokenizer
from infir.train.loop import use_bf16
from infir.utils.io import atomic_write_json
from infir.utils.log import get_logger
from infir.vlm.config import StageConfig, VLMConfig
from infir.vlm.data.clean import DualEncoder, clean_pairs, plot_histogram
from infir.vlm.data.gui_samples import (
    grounding_eval_records,
    gui_sample_pool,
    make_screens,
    referring_samples,
    trajectory_samples,
)
from infir.vlm.data.llava import load_llava
from infir.vlm.data.render import text_rendering_samples
from infir.vlm.dataset import ImageCache, encode_samples
from infir.vlm.evaluate import grounding_prompt_sample, load_screenspot, score_grounding, score_steps
from infir.vlm.generate import generate
from infir.vlm.model import VisionLanguageModel, build_vlm, load_vlm, save_vlm
from infir.vlm.processor import ConversationEncoder
from infir.vlm.train import train_stage

log = get_logger(__name__)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def build_data(cfg: VLMConfig, out: Path) -> dict[str, Any]:
    """Render screens and text images, build the sample pools, clean captions; all written under out."""
    marker = out / "pools.json"
    if marker.exists():
        log.info("data already built in %s", out)
        return json.loads(marker.read_text())
    s = cfg.synth
    layout = dict(grid=s.screen_grid, min_elements=s.min_elements, max_elements=s.max_elements,
                  render_width=s.render_width, platforms=tuple(s.platforms))
    rng = random.Random(s.seed)
    t0 = time.perf_counter()
    train_screens = make_screens(s.train_screens, out / "images", s.seed, "screen", **layout)
    eval_screens = make_screens(s.eval_screens, out / "images", s.seed + 1_000_003, "heldout", **layout)
    pools = gui_sample_pool(train_screens, rng, "train")
    if any("referring" in stage.data for stage in cfg.stages):  # optional kind: built when a stage reads it
        # its own generator, so the other pools of a seed are the same with or without it
        pools["referring"] = referring_samples(train_screens, random.Random(s.seed + 3), "train-refer")
    if s.single_element_screens:
        single = make_screens(s.single_element_screens, out / "images", s.seed + 2_000_003, "single",
                              **{**layout, "min_elements": 1, "max_elements": 1})
        pools["grounding_single"] = gui_sample_pool(single, rng, "single")["grounding"]
    pools["ocr"] = text_rendering_samples(rng, s.ocr_images, out / "images", "ocr")
    pools["llava"], quarantine = [], []
    for path in cfg.llava_json:
        good, bad = load_llava(path)
        pools["llava"] += good
        quarantine += [{**b, "file": str(path)} for b in bad]
    report: dict[str, Any] = {"quarantined": len(quarantine), "render_seconds": round(time.perf_counter() - t0, 1)}
    if cfg.clean.encoder_path is not None:
        encoder = DualEncoder(cfg.clean.encoder_path)
        for kind in ("caption", "llava"):
            kept, dropped, rep = clean_pairs(pools[kind], encoder, cfg.clean.threshold, cfg.clean.batch_size,
                                             cfg.clean.bins)
            pools[kind] = kept
            quarantine += [{"kind": kind, "reason": d["reason"], "sample": d["sample"]} for d in dropped]
            report[f"clean_{kind}"] = rep
            if rep["scored"]:
                plot_histogram(rep, out / f"similarity_{kind}.png")
    else:
        log.info("no dual encoder configured (clean.encoder_path): image-text similarity cleaning skipped")
    eval_rng = random.Random(s.seed + 7)
    held = {"grounding": grounding_eval_records(eval_screens, eval_rng),
            "trajectory": trajectory_samples(eval_screens[: cfg.eval.trajectory_episodes], eval_rng, "heldout-traj")}
    for kind, samples in {**pools, **{f"heldout_{k}": v for k, v in held.items()}}.items():
        (out / f"{kind}.json").write_text(json.dumps(samples))
    (out / "quarantine.jsonl").write_text("".join(json.dumps(q, default=str) + "\n" for q in quarantine))
    summary = {"counts": {k: len(v) for k, v in pools.items()}, "heldout": {k: len(v) for k, v in held.items()},
               **report}
    atomic_write_json(marker, summary)
    log.info("data in %s: %s", out, summary["counts"])
    return summary


def stage_samples(stage: StageConfig, data_dir: Path, rng: random.Random) -> list[dict]:
    """Draw stage.num_samples samples split by the stage's kind shares (with replacement when a pool is short)."""
    total = sum(stage.data.values())
    out: list[dict] = []
    for kind, share in stage.data.items():
        pool = json.loads((data_dir / f"{kind}.json").read_text()) if (data_dir / f"{kind}.json").exists() else []
        want = int(round(stage.num_samples * share / total))
        if not pool:
            if want:
                log.warning("stage %s wants %d %s samples but that pool is empty", stage.name, want, kind)
            continue
        picks = rng.sample(pool, want) if want <= len(pool) else [rng.choice(pool) for _ in range(want)]
        out += picks
    rng.shuffle(out)
    return out


def _ground(model: VisionLanguageModel, tokenizer: Any, encoder: ConversationEncoder, cache: ImageCache,
            records: list[dict], cfg: VLMConfig, device: torch.device) -> list[str]:
    """Greedy answers to ScreenSpot-style grounding records (the held-out synthetic ones or real ones)."""
    return generate(model, tokenizer, encoder, cache, [grounding_prompt_sample(r) for r in records],
                    max_new_tokens=cfg.eval.max_new_tokens, batch_size=cfg.eval.batch_size, device=device)


def grounding_scorer(model: VisionLanguageModel, tokenizer: Any, cfg: VLMConfig, data_dir: Path,
                     device: torch.device, limit: int = 256) -> Callable[[], float]:
    """A callback giving held-out synthetic grounding accuracy (first `limit` instructions), for eval_every."""
    records = json.loads((data_dir / "heldout_grounding.json").read_text())[:limit]
    encoder = ConversationEncoder(tokenizer, model.image_token_id, model.num_image_tokens)
    cache = ImageCache(model.preprocessing, cfg.image_cache_size)  # kept across checks: images load once
    return lambda: score_grounding(records, _ground(model, tokenizer, encoder, cache, records, cfg, device))["accuracy"]


def evaluate_vlm(model: VisionLanguageModel, tokenizer: Any, cfg: VLMConfig, data_dir: Path,
                 device: torch.device) -> dict[str, Any]:
    encoder = ConversationEncoder(tokenizer, model.image_token_id, model.num_image_tokens)
    cache = ImageCache(model.preprocessing, cfg.image_cache_size)
    records = json.loads((data_dir / "heldout_grounding.json").read_text())
    texts = _ground(model, tokenizer, encoder, cache, records, cfg, device)
    metrics: dict[str, Any] = {"synthetic_grounding": score_grounding(records, texts),
                               "grounding_examples": [{"instruction": r["instruction"], "bbox": r["bbox"],
                                                       "output": t} for r, t in zip(records[:5], texts[:5], strict=True)]}
    steps = json.loads((data_dir / "heldout_trajectory.json").read_text())
    if steps:
        texts = generate(model, tokenizer, encoder, cache, steps, max_new_tokens=cfg.eval.trajectory_max_new_tokens,
                         batch_size=cfg.eval.batch_size, device=device)
        metrics["synthetic_steps"] = score_steps(steps, texts)
    if cfg.eval.screenspot_dir is not None and (Path(cfg.eval.screenspot_dir) / "annotations.jsonl").exists():
        real = load_screenspot(cfg.eval.screenspot_dir)
        metrics["screenspot_real"] = score_grounding(real, _ground(model, tokenizer, encoder, cache, real, cfg, device))
    return metrics


def plot_training(summaries: list[dict], path: Path) -> Path | None:
    """Loss per curriculum stage (one line each, steps laid end to end) and the held-out grounding
    checks (eval_every) on a second axis; None when no stage has a loss curve."""
    if not any(s.get("loss_curve") for s in summaries):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax2 = None
    offset = 0
    for s in summaries:
        curve = s.get("loss_curve") or []
        if curve:
            ax.plot([offset + x for x, _ in curve], [y for _, y in curve], label=f"{s['stage']} loss")
        if s.get("eval_curve"):
            ax2 = ax2 or ax.twinx()
            ax2.plot([offset + x for x, _ in s["eval_curve"]], [y for _, y in s["eval_curve"]], "k.-",
                     label=f"{s['stage']} held-out grounding")
        offset += s.get("steps", 0)
    ax.set_xlabel("optimizer step (stages end to end)")
    ax.set_ylabel("training loss")
    ax.set_yscale("log")
    ax.legend(loc="upper left", fontsize=7)
    if ax2 is not None:
        ax2.set_ylabel("held-out grounding accuracy")
        ax2.set_ylim(0, 1)
        ax2.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def run_vlm(cfg: VLMConfig, lm_dir: Path, output: Path) -> dict[str, Any]:
    """Build data, train the curriculum, evaluate, save. Returns metrics (accuracy beside chance levels)."""
    output = Path(output)
    torch.manual_seed(cfg.runtime.seed)
    device = resolve_device(cfg.device)
    amp = torch.bfloat16 if use_bf16(cfg.runtime, device) else None
    data_summary = build_data(cfg, output / "data")
    tokenizer = load_tokenizer(lm_dir)
    image_token = cfg.image_token or registry.image_token(tokenizer)
    model: VisionLanguageModel | None = None
    summaries: list[dict] = []
    for i, stage in enumerate(cfg.stages):
        stage_dir = output / "stages" / stage.name
        if (stage_dir / "config.json").exists():
            log.info("stage %s already trained: loading %s", stage.name, stage_dir)
            model, tokenizer = load_vlm(stage_dir)
            summaries.append(json.loads((stage_dir / "config.json").read_text()).get("stage_summary", {}))
            continue
        if model is None:
            lm = load_model(lm_dir)
            model = build_vlm(cfg.vision, lm, tokenizer, image_token, cfg.projector.hidden_size)
        model = model.float().to(device)
        encoder = ConversationEncoder(tokenizer, model.image_token_id, model.num_image_tokens, stage.max_length)
        samples = stage_samples(stage, output / "data", random.Random(cfg.runtime.seed + i))
        examples, bad = encode_samples(samples, encoder)
        cache = ImageCache(model.preprocessing, cfg.image_cache_size)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else encoder.eot_id
        scorer = grounding_scorer(model, tokenizer, cfg, output / "data", device) if stage.eval_every else None
        summary = train_stage(model, examples, stage, cache, pad_id, device, seed=cfg.runtime.seed + i, amp_dtype=amp,
                              evaluate=scorer)
        summary["unencodable"] = len(bad)
        summaries.append(summary)
        save_vlm(model.cpu(), stage_dir, tokenizer, image_token, extra={"stage_summary": summary})
        model = model.to(device)
    if model is None:
        raise ValueError("the config has no stages")
    model = model.to(device).eval()
    metrics = {"data": data_summary, "stages": summaries}
    t0 = time.perf_counter()
    metrics.update(evaluate_vlm(model, tokenizer, cfg, output / "data", device))
    metrics["eval_seconds"] = round(time.perf_counter() - t0, 1)
    save_vlm(model.cpu(), output / "model", tokenizer, image_token)
    if plot_training(summaries, output / "training.png"):
        metrics["training_plot"] = "training.png"
    atomic_write_json(output / "metrics.json", metrics)
    g = metrics["synthetic_grounding"]
    log.info("held-out synthetic grounding: accuracy %.3f (random click %.3f, random element %.3f); metrics in %s",
             g["accuracy"], g["chance_random_click"], g.get("chance_random_element", float("nan")),
             output / "metrics.json")
    return metrics
