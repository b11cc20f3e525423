"""Learning-rate schedules as pure functions of the step (so resuming needs only the step).

- cosine: linear warmup, then cosine decay to `min_lr_ratio * lr` at the last step.
- wsd (warmup-stable-decay): warmup, a long constant phase, then a decay over the last
  `decay_fraction` of the steps (the pretrain → anneal recipe: the anneal run decays).
- constant: warmup then flat.
- decay: no warmup, decay from the start (an anneal run that continues a WSD stable phase).
"""

from __future__ import annotations

import math
from typing import Literal

ScheduleName = Literal["cosine", "wsd", "constant", "decay"]


def lr_at(
    step: int,
    *,
    lr: float,
    total_steps: int,
    warmup_steps: int = 0,
    schedule: ScheduleName = "cosine",
    min_lr_ratio: float = 0.1,
    decay_fraction: float = 0.2,
    decay_shape: Literal["linear", "cosine", "sqrt"] = "linear",
) -> float:
    """Learning rate for optimizer step `step` (0-based)."""
    if total_steps <= 0:
        raise ValueError("total_steps must be positive")
    if schedule != "decay" and warmup_steps > 0 and step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    floor = lr * min_lr_ratio
    if schedule == "constant":
        return lr
    if schedule == "cosine":
        span = max(1, total_steps - warmup_steps - 1)
        progress = min(1.0, (step - warmup_steps) / span)
        return floor + (lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    if schedule == "wsd":
        decay_steps = max(1, round(total_steps * decay_fraction))
        decay_start = total_steps - decay_steps
        if step < decay_start:
            return lr
        return floor + (lr - floor) * _decay(min(1.0, (step - decay_start + 1) / decay_steps), decay_shape)
    if schedule == "decay":
        progress = min(1.0, (step + 1) / total_steps)
        return floor + (lr - floor) * _decay(progress, decay_shape)
    raise ValueError(f"unknown schedule {schedule!r}")


def _decay(progress: float, shape: str) -> float:
    """Fraction of the way from peak (1) to floor (0) left at `progress` in [0, 1]."""
    if shape == "linear":
        return 1.0 - progress
    if shape == "cosine":
        return 0.5 * (1 + math.cos(math.pi * progress))
    if shape == "sqrt":
        return 1.0 - math.sqrt(progress)
    raise ValueError(f"unknown decay shape {shape!r}")
