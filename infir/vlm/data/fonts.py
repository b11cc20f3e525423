"""Fonts available offline: DejaVu / other TrueType fonts found on the machine, else PIL's default font."""

from __future__ import annotations

import functools
from pathlib import Path

from PIL import ImageFont

FONT_DIRS = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"), Path.home() / ".fonts")


@functools.lru_cache(maxsize=1)
def font_files() -> tuple[str, ...]:
    """TrueType files found on this machine (plus matplotlib's bundled DejaVu when installed)."""
    found: list[Path] = []
    for d in FONT_DIRS:
        if d.is_dir():
            found += sorted(d.rglob("*.ttf"))
    try:
        import matplotlib

        found += sorted((Path(matplotlib.get_data_path()) / "fonts" / "ttf").glob("DejaVu*.ttf"))
    except ImportError:
        pass
    # Keep fonts that cover Latin text (symbol and math fonts would render boxes).
    keep = [p for p in found if not any(s in p.name.lower() for s in ("cmex", "cmsy", "stixsiz", "stixnonuni",
                                                                         "lastresort", "symbol"))]
    return tuple(str(p) for p in keep)


@functools.lru_cache(maxsize=256)
def load_font(size: int, bold: bool = False, path: str | None = None) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """A font of `size` pixels: `path`, else DejaVu Sans (Bold), else PIL's built-in default."""
    if path is None:
        name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
        path = next((f for f in font_files() if Path(f).name == name), None)
    if path is not None:
        return ImageFont.truetype(path, size)
    return ImageFont.load_default(size=size)
