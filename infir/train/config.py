"""Typed configuration of a pretraining / annealing run (defaults = the paper's settings, §2.4)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class DataSource(BaseModel):
    """One tokenized source (a folder written by `write_token_shards`) and its mixture weight."""

    model_config = ConfigDict(extra="forbid")
    path: str = Field(description="Source folder, absolute or relative to the data dir.")
    weight: float = Field(1.0, ge=0)


class OfflineEvalConfig(BaseModel):
    """Offline evaluations for data mixing (paper §2.3), run every `eval_interval` steps."""

    model_config = ConfigDict(extra="forbid")
    web_val: str | None = Field(None, description="JSONL/TXT of web texts: the validation sample.")
    web_max_docs: int = 256
    reference_models: list[str] = Field(
        default_factory=list, description="Model folders whose NLL rankings pick the 'meaningless' texts."
    )
    discard_fraction: float = Field(0.2, ge=0, lt=1, description="Bottom share dropped in every ranking.")
    benchmarks_dir: str | None = Field(
        None, description="Folder in the shared/data layout for the tasks named below (None: the hub)."
    )
    answer_tasks: list[str] = Field(
        default_factory=list, description="Eval tasks (gsm8k, math500, ... or their test files) or JSONL files "
        "of {prompt|question|problem, answer|solution}: NLL of the answer."
    )
    choice_tasks: list[str] = Field(
        default_factory=list, description="Eval tasks (mmlu or its test folder) or JSONL files of "
        "{prompt|question, options|choices, answer_index|answer}: eq. 2's normalised probability."
    )
    max_items: int = 200
    max_len: int = 1024
    generation_tasks: list[str] = Field(
        default_factory=list, description="Eval tasks run few-shot (Table 1 prompts) in the anneal phase."
    )
    generation_limit: int = 100


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # model
    model: str = Field("llama3.2-1b", description="A preset of infir.model.llama.PRESETS.")
    init_from: str | None = Field(None, description="Start from this model folder instead of a preset.")
    vocab_size: int | None = Field(None, description="None: the preset's, or the tokenizer's when larger.")
    # data
    sources: list[DataSource] = Field(default_factory=list, description="Empty: every source in the data dir.")
    seq_len: int = 4096
    shuffle: bool = Field(True, description="Read each source's windows in a seeded random order (by `seed`), "
                          "new every epoch; false: in stream order.")
    micro_batch_size: int = 4
    global_batch_size: int = Field(2048, description="Sequences per optimizer step, over all ranks.")
    # length: max_steps wins over max_tokens
    max_steps: int | None = None
    max_tokens: int | None = 900_000_000_000
    # optimizer
    lr: float = 1.4e-3
    min_lr_ratio: float = 0.1
    schedule: Literal["cosine", "wsd", "constant", "decay"] = "wsd"
    warmup_steps: int = 2000
    decay_fraction: float = Field(0.2, gt=0, le=1, description="WSD: share of steps spent decaying.")
    decay_shape: Literal["linear", "cosine", "sqrt"] = "linear"
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    grad_clip: float = 1.0
    z_loss: float = 0.0
    # speed
    dtype: Literal["auto", "bf16", "fp32"] = Field("auto", description="auto: bf16 autocast on GPU, fp32 on CPU.")
    compile: bool = False
    activation_checkpointing: bool = False
    loss_chunk_size: int = 8192
    # bookkeeping
    seed: int = 0
    log_interval: int = 1
    checkpoint_interval: int = Field(1000, description="Steps between checkpoints; 0 = none (benchmarks).")
    keep_checkpoints: int = 3
    eval_interval: int = 1000
    eval: OfflineEvalConfig = Field(default_factory=OfflineEvalConfig)
    tensorboard: bool = True
    wandb_project: str | None = None

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.max_steps is None and self.max_tokens is None:
            raise ValueError("set max_steps or max_tokens")
        if self.global_batch_size % self.micro_batch_size:
            raise ValueError("global_batch_size must be a multiple of micro_batch_size")
        return self

    def grad_accum_steps(self, world_size: int) -> int:
        per_step = self.micro_batch_size * world_size
        if self.global_batch_size % per_step:
            raise ValueError(f"global_batch_size {self.global_batch_size} is not a multiple of "
                             f"micro_batch_size x world_size = {per_step}")
        return self.global_batch_size // per_step

    def total_steps(self) -> int:
        if self.max_steps is not None:
            return self.max_steps
        return max(1, int(self.max_tokens) // (self.global_batch_size * self.seq_len))

    def tokens_per_step(self) -> int:
        return self.global_batch_size * self.seq_len
