"""`load_generator(path_or_url)`: the engine for a model folder or an OpenAI-compatible URL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def load_generator(
    path_or_url: str | Path, device: str | None = None, batch_size: int = 16, **kwargs: Any
) -> Any:
    """A generator for a model folder, or an OpenAI-compatible server URL (http...).

    Folders of an architecture in infir's registry (llama, qwen2, ...) get the infir engine; any other
    transformers causal LM gets the HF engine.
    """
    target = str(path_or_url)
    if target.startswith(("http://", "https://")):
        from infir.generation.http import OpenAIGenerator

        return OpenAIGenerator(target, **kwargs)
    path = Path(target)
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"{path}: not a model folder (no config.json) and not an http(s) URL")
    config = json.loads((path / "config.json").read_text())
    from infir.model.registry import is_supported_config

    if is_supported_config(config):  # an architecture of infir's registry: the infir engine
        from infir.generation.engine import InfirGenerator

        return InfirGenerator.from_pretrained(path, device=device, batch_size=batch_size)
    from infir.generation.hf import HFGenerator

    return HFGenerator.from_pretrained(path, device=device, batch_size=batch_size)
