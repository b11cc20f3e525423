"""Typed configuration of an SFT run. Defaults are the paper's settings (§3.2): Llama 3 chat template,
loss on assistant tokens only, 4 epochs, lr 2e-5, batch 128 samples, cosine schedule with warmup
ratio 0.1, max length 4096. Long-CoT SFT (App. D) is the same stage with `SFTConfig.long_cot()`.
The optimizer, schedule, runtime, logging and checkpoint parts are the trainer's (infir.train.config).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from infir.train.config import (
    CheckpointConfig,
    Composed,
    LoggingConfig,
    OptimizerConfig,
    RuntimeConfig,
    ScheduleConfig,
)


class SFTSource(BaseModel):
    """One SFT data file (JSON, JSONL, Parquet), or a glob of them (a Hugging Face release's shards, e.g.
    data/sft/numinamath_cot/**/*.parquet), and how to read it."""

    model_config = ConfigDict(extra="forbid")
    path: str
    format: Literal["auto", "alpaca", "sharegpt", "openai", "self_instruct"] = "auto"
    domain: str | None = Field(None, description="Domain label for records that carry none.")

    def files(self) -> list[Path]:
        """The files `path` names: a glob's matches (sorted), else the path itself; a glob matching nothing is
        an error naming it."""
        import glob

        if not glob.has_magic(self.path):
            return [Path(self.path)]
        found = sorted(Path(p) for p in glob.glob(self.path, recursive=True) if Path(p).is_file())
        if not found:
            raise FileNotFoundError(f"SFT source {self.path!r} matches no file")
        return found


class SelectionConfig(BaseModel):
    """Which conversations to train on (all steps optional, applied in this order)."""

    model_config = ConfigDict(extra="forbid")
    dedup: bool = Field(True, description="Drop repeated instructions (normalised prompt text).")
    difficulty_keep: list[str] | None = Field(
        None, description="App. B.2 compression: keep these difficulty levels, e.g. [medium, hard, very hard].")
    difficulty_domains: list[str] | None = Field(["math"], description="Domains compressed (None: all).")
    keep_unlabeled: bool = True
    s1_subset: int | None = Field(None, ge=1, description="App. D: s1-style difficulty+diversity subset size.")
    domain_weights: dict[str, float] | None = Field(None, description="Mixture by domain weights.")
    mixture_size: int | None = Field(None, ge=1, description="Samples in the mixture (default: all weighted).")


class SFTConfig(Composed):
    """An SFT run: data, selection, lengths, epochs, and the shared training parts with SFT defaults."""

    PART_DEFAULTS: ClassVar[dict[str, dict[str, Any]]] = {
        # the paper's lr, batch 128, cosine with warmup ratio 0.1 (§3.2); the optimizer otherwise as in
        # HF / LLaMA-Factory SFT (the paper is silent): AdamW betas (0.9, 0.999), no weight decay
        "optimizer": {"lr": 2e-5, "weight_decay": 0.0, "betas": (0.9, 0.999)},
        "schedule": {"kind": "cosine", "warmup_steps": None, "warmup_ratio": 0.1, "min_lr_ratio": 0.0},
        "logging": {"tensorboard": False},
        "checkpoint": {"interval": 500, "keep": 2},
    }

    # data
    sources: list[SFTSource] = Field(default_factory=list, description="Extra files beyond those passed in.")
    selection: SelectionConfig = Field(default_factory=SelectionConfig)
    max_length: int = Field(4096, ge=16, description="Token positions per sample; longer ones are truncated.")
    packing: bool = True
    heldout_fraction: float = Field(0.02, ge=0, lt=0.5, description="Share held out for assistant-token loss.")
    heldout_max: int = Field(256, ge=0)
    # length and batch (the paper's)
    epochs: float = Field(4, gt=0)
    max_steps: int | None = Field(None, ge=1, description="Stop after this many steps (smoke runs).")
    global_batch_size: int = Field(128, ge=1, description="Conversations per optimizer step, over all ranks.")
    micro_batch_size: int = Field(4, ge=1, description="At most this many packed rows per micro-batch.")
    eval_interval: int = Field(0, ge=0, description="Held-out loss every N steps (0: at the end only).")
    # the shared parts (infir.train.config)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)

    @model_validator(mode="after")
    def _sft_schedule(self) -> SFTConfig:
        if self.schedule.kind not in ("cosine", "constant"):
            raise ValueError(f"SFT supports schedule.kind cosine or constant, got {self.schedule.kind!r}")
        return self

    @classmethod
    def long_cot(cls, **overrides: Any) -> SFTConfig:
        """Long-CoT SFT (App. D): continue from the instruct model on long traces; max length 16k."""
        return cls(**{**LONG_COT_DEFAULTS, **overrides})


LONG_COT_DEFAULTS: dict[str, Any] = {"max_length": 16384, "micro_batch_size": 1}
