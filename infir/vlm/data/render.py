"""Text-rendering synthesis (paper §4.1.1): documents, code and math rendered to images for OCR / QA.

Each image varies font (the TrueType fonts found offline, else PIL's default), size, colours,
position, and noise (Gaussian pixel noise, an occasional slight blur), so the model learns to
read text rather than one rendering of it.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from infir.vlm.data.fonts import font_files, load_font

_WORDS = ("data model train image text screen value graph point line score layer token table chart "
          "number total count sum mean range field label title page note code plan step state").split()


def synthetic_texts(rng: random.Random, n: int) -> list[tuple[str, str]]:
    """(genre, text) pairs: short document lines, code lines and math, for when no corpus is given."""
    out = []
    for _ in range(n):
        genre = rng.choice(("document", "code", "math"))
        if genre == "document":
            text = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(2, 4))).capitalize()
        elif genre == "code":
            name, arg = rng.choice(_WORDS), rng.choice("xyzn")
            text = rng.choice([f"def {name}({arg}):", f"return {arg} + {rng.randint(1, 99)}",
                               f"{name} = {rng.randint(0, 999)}", f"print({name})"])
        else:
            a, b = rng.randint(1, 99), rng.randint(1, 99)
            op = rng.choice("+-*")
            text = f"{a} {op} {b} = {eval(f'{a}{op}{b}')}"  # noqa: S307 - our own digits and operator
        out.append((genre, text))
    return out


def render_text(text: str, rng: random.Random, width: int = 256, height: int = 96,
                fonts: tuple[str, ...] | None = None) -> Image.Image:
    """Render `text` (wrapped to the width) with a random font, size, colours and noise."""
    fonts = font_files() if fonts is None else fonts
    bg = tuple(rng.randint(200, 255) for _ in range(3))
    fg = tuple(rng.randint(0, 80) for _ in range(3))
    image = Image.new("RGB", (width, height), bg)
    draw = ImageDraw.Draw(image)
    size = rng.randint(max(8, height // 8), max(9, height // 4))
    font = load_font(size, path=rng.choice(fonts) if fonts else None)
    lines, line = [], ""
    for word in text.split():
        trial = f"{line} {word}".strip()
        if line and draw.textlength(trial, font=font) > width - 8:
            lines.append(line)
            line = word
        else:
            line = trial
    lines.append(line)
    x, y = rng.randint(2, 10), rng.randint(2, max(3, height // 6))
    for ln in lines:
        draw.text((x, y), ln, fill=fg, font=font)
        y += int(size * 1.25)
    arr = np.asarray(image, dtype=np.float32)
    arr += np.random.default_rng(rng.randint(0, 2**31)).normal(0, rng.uniform(0, 12), arr.shape)
    image = Image.fromarray(arr.clip(0, 255).astype(np.uint8))
    if rng.random() < 0.2:
        image = image.filter(ImageFilter.GaussianBlur(0.6))
    return image


OCR_PROMPTS = ("What text is written in the image?", "Read the text in the image.", "Transcribe the image.")


def text_rendering_samples(rng: random.Random, n: int, image_dir: Path, prefix: str = "ocr",
                           texts: list[tuple[str, str]] | None = None) -> list[dict]:
    """OCR and QA samples in LLaVA format over freshly rendered images (saved as PNG under image_dir)."""
    image_dir.mkdir(parents=True, exist_ok=True)
    texts = texts or synthetic_texts(rng, n)
    samples = []
    for i, (genre, text) in enumerate(texts[:n]):
        path = image_dir / f"{prefix}-{i:06d}.png"
        render_text(text, rng).save(path)
        if rng.random() < 0.7:
            q, a = rng.choice(OCR_PROMPTS), text
        else:
            words = text.split()
            q, a = rng.choice([("What is the first word in the image?", words[0]),
                               ("What is the last word in the image?", words[-1]),
                               ("Is this code, math or a document?", genre)])
        samples.append({"id": f"{prefix}-{i:06d}", "image": str(path), "kind": "ocr",
                        "conversations": [{"from": "human", "value": f"<image>\n{q}"},
                                          {"from": "gpt", "value": a}]})
    return samples
