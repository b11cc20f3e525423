"""Where training metrics go: metrics.jsonl (always), TensorBoard, wandb (when installed and asked for)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from infir.utils.io import atomic_write_text
from infir.utils.log import get_logger

log = get_logger(__name__)


def truncate_metrics(path: Path, last_step: int) -> None:
    """After a resume, drop lines logged past the checkpoint so each step appears once."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a kill
        if row.get("step", 0) <= last_step:
            kept.append(line)
    atomic_write_text(path, "".join(x + "\n" for x in kept))


class MetricsLogger:
    """Rank 0 writes; the others hold a disabled logger."""

    def __init__(self, output: Path, enabled: bool, tensorboard: bool = True, wandb_project: str | None = None,
                 run_config: dict[str, Any] | None = None) -> None:
        self.enabled = enabled
        self.path = output / "metrics.jsonl"
        self._file = None
        self._tb = None
        self._wandb = None
        if not enabled:
            return
        output.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(output / "tensorboard"))
            except ImportError:
                log.warning("tensorboard is not installed: metrics go to metrics.jsonl only")
        if wandb_project:
            try:
                import wandb

                self._wandb = wandb.init(project=wandb_project, dir=str(output), config=run_config or {},
                                         resume="allow")
            except ImportError:
                log.warning("wandb is not installed: skipping wandb logging")

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        if not self.enabled:
            return
        row = {"step": step, **metrics}
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()
        numeric = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)}
        if self._tb is not None:
            for k, v in numeric.items():
                self._tb.add_scalar(k, v, step)
        if self._wandb is not None:
            self._wandb.log(numeric, step=step)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()
