"""Typed configuration of an SFT run. Defaults are the paper's settings (§3.2): Llama 3 chat template,
loss on assistant tokens only, 4 epochs, lr 2e-5, batch 128 samples, cosine schedule with warmup
ratio 0.1, max length 4096. Long-CoT SFT (App. D) is the same stage with `SFTConfig.long_cot()`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class SFTSource(BaseModel):
    """One SFT data file (JSON or JSONL) and how to read it."""

    model_config = ConfigDict(extra="forbid")
    path: str
    format: Literal["auto", "alpaca", "sharegpt", "openai", "self_instruct"] = "auto"
    domain: str | None = Field(None, description="Domain label for records that carry none.")


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


class SFTConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # data
    sources: list[SFTSource] = Field(default_factory=list, description="Extra files beyond those passed in.")
    selection: SelectionConfig = Field(default_factory=SelectionConfig)
    max_length: int = Field(4096, ge=16, description="Token positions per sample; longer ones are truncated.")
    packing: bool = True
    heldout_fraction: float = Field(0.02, ge=0, lt=0.5, description="Share held out for assistant-token loss.")
    heldout_max: int = Field(256, ge=0)
    # schedule (the paper's)
    epochs: float = Field(4, gt=0)
    max_steps: int | None = Field(None, ge=1, description="Stop after this many steps (smoke runs).")
    lr: float = 2e-5
    global_batch_size: int = Field(128, ge=1, description="Conversations per optimizer step, over all ranks.")
    micro_batch_size: int = Field(4, ge=1, description="At most this many packed rows per micro-batch.")
    schedule: Literal["cosine", "constant"] = "cosine"
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    min_lr_ratio: float = Field(0.0, ge=0, le=1)
    # optimizer (paper silent: the usual HF/LLaMA-Factory SFT settings)
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    grad_clip: float = 1.0
    # speed
    dtype: Literal["auto", "bf16", "fp32"] = "auto"
    compile: bool = False
    activation_checkpointing: bool = False
    loss_chunk_size: int = 8192
    # bookkeeping
    seed: int = 0
    log_interval: int = 1
    eval_interval: int = Field(0, ge=0, description="Held-out loss every N steps (0: at the end only).")
    checkpoint_interval: int = 500
    keep_checkpoints: int = 2
    tensorboard: bool = False

    @classmethod
    def long_cot(cls, **overrides) -> SFTConfig:
        """Long-CoT SFT (App. D): continue from the instruct model on long traces; max length 16k."""
        base = {"max_length": 16384, "micro_batch_size": 1}
        return cls(**{**base, **overrides})
