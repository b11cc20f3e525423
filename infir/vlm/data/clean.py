"""Multimodal cleaning (paper §4.1.2, App. E): drop image-text pairs whose embedding cosine similarity
under a dual encoder is below a threshold (0.5 by default), and report the similarity histogram.

Any local transformers dual encoder with `get_image_features` / `get_text_features` works
(CLIP, SigLIP; a Vista-style encoder exported in one of those layouts). The text of a pair is the
first assistant turn (the caption).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from infir.utils.log import get_logger, progress
from infir.vlm.processor import ROLE_MAP, sample_images

log = get_logger(__name__)


def _features(out: Any) -> torch.Tensor:
    """transformers 5 may return a model output instead of a tensor: take its pooled embedding."""
    if isinstance(out, torch.Tensor):
        return out
    for name in ("image_embeds", "text_embeds", "pooler_output"):
        value = getattr(out, name, None)
        if isinstance(value, torch.Tensor):
            return value
    raise TypeError(f"cannot find embeddings in {type(out).__name__}")


class DualEncoder:
    """A local dual encoder folder: model + tokenizer + image processor (what `save_pretrained` writes)."""

    def __init__(self, path: str | Path, device: str = "cpu") -> None:
        from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

        self.model = AutoModel.from_pretrained(str(path)).to(device).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        self.image_processor = AutoImageProcessor.from_pretrained(str(path))
        text_cfg = getattr(self.model.config, "text_config", self.model.config)
        self.max_length = int(getattr(text_cfg, "max_position_embeddings", 64))
        # SigLIP was trained on texts padded to the full length; CLIP pools at the end token.
        self.padding = "max_length" if "siglip" in type(self.model).__name__.lower() else "longest"
        self.device = device

    @torch.no_grad()
    def similarity(self, images: list[Image.Image], texts: list[str]) -> np.ndarray:
        """Cosine similarity of each (image, text) pair."""
        tok = self.tokenizer(texts, padding=self.padding, truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        pix = self.image_processor(images=images, return_tensors="pt")["pixel_values"].to(self.device)
        img = _features(self.model.get_image_features(pixel_values=pix))
        txt_kwargs = {k: v.to(self.device) for k, v in tok.items() if k in ("input_ids", "attention_mask")}
        txt = _features(self.model.get_text_features(**txt_kwargs))
        img = torch.nn.functional.normalize(img.float(), dim=-1)
        txt = torch.nn.functional.normalize(txt.float(), dim=-1)
        return (img * txt).sum(-1).cpu().numpy()


def pair_text(sample: dict) -> str:
    return next(t["value"] for t in sample["conversations"] if ROLE_MAP.get(t["from"]) == "assistant")


def clean_pairs(samples: list[dict], encoder: DualEncoder, threshold: float = 0.5, batch_size: int = 32,
                bins: int = 20) -> tuple[list[dict], list[dict], dict]:
    """-> (kept, dropped [{"sample", "reason", "similarity"}], report with the histogram).

    Only single-image samples are scored; multi-image and text-only samples pass unchanged.
    """
    scored = [s for s in samples if len(sample_images(s)) == 1]
    passthrough = [s for s in samples if len(sample_images(s)) != 1]
    sims = np.zeros(len(scored), dtype=np.float32)
    with progress() as bar:
        task = bar.add_task("similarity", total=len(scored))
        for i in range(0, len(scored), batch_size):
            chunk = scored[i : i + batch_size]
            images = [Image.open(sample_images(s)[0]).convert("RGB") for s in chunk]
            sims[i : i + len(chunk)] = encoder.similarity(images, [pair_text(s) for s in chunk])
            bar.advance(task, len(chunk))
    kept, dropped = list(passthrough), []
    for s, sim in zip(scored, sims, strict=True):
        s.setdefault("meta", {})["similarity"] = float(sim)
        if sim >= threshold:
            kept.append(s)
        else:
            dropped.append({"sample": s, "reason": f"similarity {sim:.3f} < {threshold}", "similarity": float(sim)})
    report = similarity_report(sims, threshold, bins)
    report["passthrough"] = len(passthrough)
    log.info("similarity cleaning: %d scored, %d dropped (< %.2f), %d passed through unscored",
             len(scored), len(dropped), threshold, len(passthrough))
    return kept, dropped, report


def similarity_report(sims: np.ndarray, threshold: float, bins: int = 20) -> dict:
    """Counts per bin over [-1, 1] plus summary numbers (what App. E's Fig. 4b plots)."""
    counts, edges = np.histogram(sims, bins=bins, range=(-1.0, 1.0))
    return {
        "scored": int(len(sims)),
        "threshold": threshold,
        "below_threshold": int((sims < threshold).sum()),
        "fraction_below": float((sims < threshold).mean()) if len(sims) else 0.0,
        "mean": float(sims.mean()) if len(sims) else None,
        "histogram": {"edges": [round(float(e), 3) for e in edges], "counts": counts.tolist()},
    }


def plot_histogram(report: dict, path: str | Path) -> Path:
    """Save the similarity histogram as a PNG (matplotlib, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    edges, counts = report["histogram"]["edges"], report["histogram"]["counts"]
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", edgecolor="black")
    ax.axvline(report["threshold"], color="red", linestyle="--", label=f"threshold {report['threshold']}")
    ax.set_xlabel("image-text cosine similarity")
    ax.set_ylabel("pairs")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)
