"""The paper-scale InfiR-VL recipe end to end, at a few steps per stage (a GPU check, not a training run).

Builds what `recipes/infir-vl.yaml` builds (SigLIP-So400m/14-384 tower, 729 image tokens per image,
Linear-GELU-Linear projector, a Llama-3.2-1B-shaped LM) with random weights, since weights cannot be
downloaded here, and runs all three curriculum stages, evaluation and saving through
`infir.vlm.pipeline.run_vlm`, with sample counts cut to a few batches. Prints time per stage, peak GPU
memory and the stage losses. With `--lm DIR --vision DIR` it uses real local weights instead.

    python bench/vlm_paper_scale.py                  # GPU: paper architecture, bf16
    python bench/vlm_paper_scale.py --quick          # CPU: tiny tower and LM, same code path
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="CPU: the tiny-vl tower and a micro LM.")
    ap.add_argument("--lm", type=Path, default=None, help="A local InfiR/Llama LM folder (else random).")
    ap.add_argument("--vision", type=Path, default=None, help="A local SigLIP folder (else random So400m).")
    ap.add_argument("--samples", type=int, default=None, help="Samples per stage.")
    args = ap.parse_args()

    from infir.vlm.config import load_vlm_config
    from infir.vlm.pipeline import run_vlm
    from infir.vlm.tiny import make_tiny_lm

    repo = Path(__file__).resolve().parents[1]
    cfg = load_vlm_config(repo / "recipes" / ("tiny-vl.yaml" if args.quick else "infir-vl.yaml"))
    n = args.samples or (32 if args.quick else 96)
    cfg.synth.train_screens, cfg.synth.ocr_images, cfg.synth.eval_screens = n, n, 16
    cfg.eval.trajectory_episodes = 4
    if args.vision is not None:
        cfg.vision.path = args.vision
    for stage in cfg.stages:
        stage.num_samples = n
        stage.grad_accum = 1
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        lm_dir = args.lm
        if lm_dir is None:
            texts = [f"Click the button labelled item {i}. The answer is {i}." for i in range(300)]
            preset = "micro" if args.quick else "llama3.2-1b"
            lm_dir = make_tiny_lm(Path(tmp) / "lm", texts, preset=preset, vocab_size=1024,
                                  init_std=0.15 if args.quick else 0.02)
        t0 = time.perf_counter()
        metrics = run_vlm(cfg, lm_dir, out)
        total = time.perf_counter() - t0
        saved = sorted(p.name for p in (out / "model").iterdir())
    vision = "local " + str(cfg.vision.path) if cfg.vision.path else f"random {cfg.vision.preset}"
    print(f"vision {vision}, LM {'local' if args.lm else 'random'}, {n} samples per stage, device "
          f"{'cuda' if torch.cuda.is_available() else 'cpu'}")
    for s in metrics["stages"]:
        keys = ("stage", "steps", "examples", "trainable", "loss_first", "loss_last", "seconds")
        print("stage " + ", ".join(f"{k}={s[k]}" for k in keys if k in s))
    g = metrics["synthetic_grounding"]
    print(f"eval: synthetic grounding {g}, eval {metrics['eval_seconds']} s; saved model folder: {saved}")
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else float("nan")
    print(f"result: total_s={total:.1f} peak_gpu_gib={peak:.1f}")


if __name__ == "__main__":
    main()
