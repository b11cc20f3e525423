"""Synthetic GUI screens rendered from layouts with known element boxes.

A screen is a grid of cells; a few cells hold an element: an *icon* (a coloured shape) or a
*text* button (a word on a button). Every element is centred on its cell, so the click point is
one of grid x grid positions (a task a tiny model can learn in CPU minutes) while box sizes vary. Screens have a platform (mobile portrait,
desktop / web landscape with their own palettes), which the grounding report splits by, as
ScreenSpot does (platform x text/icon).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw

from infir.vlm.data.fonts import load_font
from infir.vlm.data.gui_format import normalize_box

COLORS = {"red": (220, 40, 40), "green": (30, 170, 60), "blue": (40, 80, 220), "orange": (245, 150, 20),
          "purple": (140, 50, 190)}
SHAPES = ("circle", "square", "triangle", "diamond")
WORDS = ("OK", "Send", "Menu", "Back", "Save", "Home", "Edit", "Next")
PLATFORM_SIZE = {"mobile": (9, 16), "desktop": (16, 10), "web": (16, 10)}
PALETTES = {"mobile": [(250, 250, 250), (235, 240, 250)], "desktop": [(225, 225, 230), (240, 236, 228)],
            "web": [(255, 255, 255), (245, 248, 240)]}


@dataclass
class Element:
    kind: str  # "icon" or "text"
    label: str  # "red circle" / "Save"
    box: list[int]  # normalised [0, 1000] x1, y1, x2, y2
    box_px: tuple[int, int, int, int]
    point: list[int]  # normalised click point: the centre of the element (and of its grid cell)

    @property
    def phrase(self) -> str:
        return f"the {self.label}" if self.kind == "icon" else f'the "{self.label}" button'


@dataclass
class Screen:
    platform: str
    width: int
    height: int
    elements: list[Element] = field(default_factory=list)
    image: Image.Image | None = None

    def caption(self) -> str:
        names = [_article(e.label) + (" button" if e.kind == "text" else "") for e in self.elements]
        listed = ", ".join(names[:-1]) + f" and {names[-1]}" if len(names) > 1 else names[0]
        return f"A {self.platform} screen with {listed}."


def _article(label: str) -> str:
    return f"an {label}" if label[0].lower() in "aeiou" else f"a {label}"


def _draw_icon(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], color: tuple, shape: str) -> None:
    x1, y1, x2, y2 = box
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    if shape == "circle":
        draw.ellipse(box, fill=color)
    elif shape == "square":
        draw.rectangle(box, fill=color)
    elif shape == "triangle":
        draw.polygon([(cx, y1), (x2, y2), (x1, y2)], fill=color)
    else:
        draw.polygon([(cx, y1), (x2, cy), (cx, y2), (x1, cy)], fill=color)


def _draw_button(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], word: str, rng: random.Random) -> None:
    x1, y1, x2, y2 = box
    fill = rng.choice([(230, 230, 230), (210, 225, 245), (245, 245, 210)])
    draw.rounded_rectangle(box, radius=max(1, (y2 - y1) // 5), fill=fill, outline=(60, 60, 60), width=1)
    size = max(6, min(int((y2 - y1) * 0.6), int((x2 - x1) * 1.6 / max(2, len(word)))))
    font = load_font(size, bold=True)
    draw.text(((x1 + x2) / 2, (y1 + y2) / 2), word, fill=(20, 20, 20), font=font, anchor="mm")


def random_screen(rng: random.Random, grid: int = 4, min_elements: int = 3, max_elements: int = 6,
                  render_width: int = 256, platforms: tuple[str, ...] = ("mobile", "desktop", "web")) -> Screen:
    """Lay out and render one screen; labels are unique on a screen so every instruction has one answer."""
    platform = rng.choice(platforms)
    aw, ah = PLATFORM_SIZE[platform]
    long_side = render_width
    width, height = (long_side * aw // ah, long_side) if ah > aw else (long_side, long_side * ah // aw)
    image = Image.new("RGB", (width, height), rng.choice(PALETTES[platform]))
    draw = ImageDraw.Draw(image)
    screen = Screen(platform, width, height, image=image)
    most = len(WORDS) + len(COLORS) * len(SHAPES)  # distinct labels: every instruction has one answer
    if min(min_elements, grid * grid) > most:
        raise ValueError(f"a screen holds at most {most} distinctly labelled elements, got min_elements={min_elements}")
    upper = min(max_elements, grid * grid, most)
    cells = rng.sample(range(grid * grid), rng.randint(min(min_elements, upper), upper))
    words = rng.sample(WORDS, min(len(WORDS), len(cells)))
    free_colors = list(COLORS)
    rng.shuffle(free_colors)
    for cell in sorted(cells):
        r, c = divmod(cell, grid)
        cw, ch = width / grid, height / grid
        # Boxes are centred on their cell (the click point), sizes vary.
        cx, cy = (c + 0.5) * cw, (r + 0.5) * ch
        hw, hh = rng.uniform(0.28, 0.45) * cw, rng.uniform(0.22, 0.38) * ch
        box_px = (round(cx - hw), round(cy - hh), round(cx + hw), round(cy + hh))
        point = [round((c + 0.5) * 1000 / grid), round((r + 0.5) * 1000 / grid)]
        if words and (rng.random() < 0.5 or not free_colors):
            word = words.pop()
            _draw_button(draw, box_px, word, rng)
            kind, label = "text", word
        else:
            # Each colour once per screen while colours last; then (more elements than colours and
            # words) a used colour with a shape not yet on the screen. Icon labels stay unique.
            if free_colors:
                color, shape = free_colors.pop(), rng.choice(SHAPES)
            else:
                taken = {e.label for e in screen.elements}
                color, shape = rng.choice([(c, sh) for c in COLORS for sh in SHAPES if f"{c} {sh}" not in taken])
            side = min(box_px[2] - box_px[0], box_px[3] - box_px[1])
            box_px = (round(cx - side / 2), round(cy - side / 2), round(cx + side / 2), round(cy + side / 2))
            _draw_icon(draw, box_px, COLORS[color], shape)
            kind, label = "icon", f"{color} {shape}"
        screen.elements.append(Element(kind, label, normalize_box(box_px, width, height), box_px, point))
    return screen


def save_screen(screen: Screen, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert screen.image is not None
    screen.image.save(path)
    return str(path)
