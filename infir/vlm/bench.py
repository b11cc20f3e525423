"""Image benchmarks of the eval room run on an InfiR-VL model: MMMU (paper Table 3), images spliced into the prompt.

The eval room owns the benchmark (rows, prompt, MMMU's answer extraction: `infir.eval.tasks.mmmu`); this file only
turns its samples into LLaVA-style conversations and decodes them with the VLM's generation function
(`infir.vlm.generate.generate`). Rows the model cannot take (a missing image, more image tokens than the context)
are counted skips with their reasons, never evaluated without their images.

`standin_mmmu_rows` writes the embedded demo's stand-in for MMMU: questions in MMMU's release format about the
VLM's held-out synthetic screens (where an element is, how many elements a screen shows). They exercise the real
MMMU code path; they are not MMMU, and every report labels them so.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from infir.utils.io import atomic_write_json, write_jsonl
from infir.utils.log import get_logger

log = get_logger(__name__)


def to_llava(sample: Any) -> dict[str, Any]:
    """An eval-room chat sample with `meta["images"]` -> the VLM's conversation sample."""
    turns = sample.prompt if isinstance(sample.prompt, list) else [{"role": "user", "content": sample.prompt}]
    role = {"user": "human", "assistant": "gpt", "system": "system"}
    return {"id": sample.id, "image": list(sample.meta.get("images") or []),
            "conversations": [{"from": role[t["role"]], "value": t["content"]} for t in turns]}


def run_mmmu(vlm_dir: str | Path, output: str | Path, data_dir: Path | None = None, rows: Path | None = None,
             image_dirs: tuple[Path, ...] = (), limit: int | None = None, max_new_tokens: int = 32,
             batch_size: int = 16, device: str = "auto", split: str = "validation") -> dict[str, Any]:
    """MMMU on a saved InfiR-VL folder; writes output/samples.jsonl, skipped.jsonl, metrics.json; returns metrics
    (MMMU's accuracy, the random-guess counts, and `skipped` with reasons)."""
    from infir.eval.tasks import get_task
    from infir.eval.tasks.mmmu import load_samples
    from infir.vlm.dataset import ImageCache
    from infir.vlm.generate import generate
    from infir.vlm.model import load_vlm
    from infir.vlm.pipeline import resolve_device
    from infir.vlm.processor import ConversationEncoder

    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    task = get_task("mmmu", "chat")
    samples, skipped = load_samples(data_dir, limit, split=split, rows=rows, image_dirs=image_dirs)
    n_rows = len(samples) + len(skipped)
    dev = resolve_device(device)
    model, tokenizer = load_vlm(vlm_dir, device=dev)
    model = model.to(dev).eval()
    encoder = ConversationEncoder(tokenizer, model.image_token_id, model.num_image_tokens,
                                  max_length=model.lm.config.max_position_embeddings - max_new_tokens)
    cache = ImageCache(model.preprocessing)
    ready, convs = [], []
    for s in samples:  # what the encoder refuses (too long, image marks that do not add up) is a counted skip
        conv = to_llava(s)
        try:
            encoder.encode(conv, add_generation_prompt=True)
            for path in conv["image"]:
                cache.get(path)
        except (ValueError, OSError) as e:
            skipped.append({"id": s.id, "reason": f"unusable: {e}"})
            continue
        ready.append(s)
        convs.append(conv)
    with torch.no_grad():
        texts = generate(model, tokenizer, encoder, cache, convs, max_new_tokens=max_new_tokens,
                         batch_size=batch_size, device=dev) if convs else []
    graded = []
    for s, text in zip(ready, texts, strict=True):
        graded.append({"id": s.id, "reference": s.reference, "completion": text, **task.grade(s, [text])})
    metrics: dict[str, Any] = dict(task.aggregate(graded)) if task.aggregate else {}
    reasons = Counter(s["reason"].split(":")[0] for s in skipped)
    metrics.update(skipped=len(skipped), skipped_by_reason=dict(reasons), rows=n_rows)
    write_jsonl(output / "samples.jsonl", graded)
    write_jsonl(output / "skipped.jsonl", skipped)
    atomic_write_json(output / "metrics.json", metrics)
    log.info("MMMU: accuracy %.3f on %d questions (%d random guesses), %d rows skipped -> %s",
             metrics.get("accuracy", 0.0), len(graded), int(metrics.get("random_guesses", 0)), len(skipped), output)
    return metrics


QUADRANTS = ("top-left", "top-right", "bottom-left", "bottom-right")


def standin_mmmu_rows(heldout_grounding: Path, out_file: Path, n: int = 40, seed: int = 0) -> Path:
    """MMMU-format rows about held-out synthetic screens (the demo's stand-in for MMMU): multiple choice "where
    is the element ...?" (four quadrants) and open "how many elements ...?" questions, images as paths."""
    records = json.loads(Path(heldout_grounding).read_text())
    rng = random.Random(seed)
    rng.shuffle(records)
    rows = []
    for i, r in enumerate(records[:n]):
        x1, y1, x2, y2 = r["bbox"]
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        if i % 4 == 3:  # every fourth an open question
            rows.append({"id": f"validation_Standin_Screens_{i}", "question": "How many interface elements does "
                         "the screen in <image 1> show?", "options": "[]", "answer": str(r["n_elements"]),
                         "image_1": str(Path(r["image"]).resolve()), "question_type": "open",
                         "subfield": "toy screens (stand-in)"})
            continue
        quadrant = QUADRANTS[(cy >= 500) * 2 + (cx >= 500)]
        rows.append({"id": f"validation_Standin_Screens_{i}",
                     "question": f"<image 1> In which part of the screen is the element for this instruction: "
                                 f"\"{r['instruction']}\"?",
                     "options": list(QUADRANTS), "answer": "ABCD"[QUADRANTS.index(quadrant)],
                     "image_1": str(Path(r["image"]).resolve()), "question_type": "multiple-choice",
                     "subfield": "toy screens (stand-in)"})
    write_jsonl(out_file, rows)
    return out_file
