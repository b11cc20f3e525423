"""Typed configuration of training runs, composed from shared parts declared once here.

The parts — `OptimizerConfig`, `ScheduleConfig`, `RuntimeConfig` (precision and speed), `LoggingConfig`,
`CheckpointConfig` — are embedded by the pretrain/anneal stages (`TrainConfig`, defaults = the paper's §2.4
settings), by SFT (`infir.sft.config.SFTConfig`, §3.2) and by each VLM curriculum stage
(`infir.vlm.config.StageConfig`, §4.3), each with its own defaults (`PART_DEFAULTS`): a recipe that sets
`optimizer: {lr: 1e-5}` keeps the stage's other optimizer defaults. Settings that moved into a part are
reported by name (`'lr' is now 'optimizer.lr'`).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from infir.utils.config import moved_keys


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OptimizerConfig(_Part):
    """AdamW; no weight decay on 1-D parameters (norms, biases)."""

    lr: float = Field(1.4e-3, gt=0, description="Peak learning rate.")
    weight_decay: float = Field(0.1, ge=0)
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = Field(1e-8, gt=0)
    grad_clip: float = Field(1.0, ge=0, description="Max global gradient norm; 0 = no clipping.")


class ScheduleConfig(_Part):
    """Learning-rate schedule (infir.train.schedule): warmup, then cosine / warmup-stable-decay / constant / decay.

    Warmup is `warmup_steps`, or `warmup_ratio` of the stage's steps when that is set instead.
    """

    kind: Literal["cosine", "wsd", "constant", "decay"] = "wsd"
    warmup_steps: int | None = Field(2000, ge=0)
    warmup_ratio: float | None = Field(None, ge=0, lt=1)
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    decay_fraction: float = Field(0.2, gt=0, le=1, description="WSD: share of steps spent decaying.")
    decay_shape: Literal["linear", "cosine", "sqrt"] = "linear"

    @model_validator(mode="after")
    def _one_warmup(self) -> ScheduleConfig:
        if self.warmup_steps is not None and self.warmup_ratio is not None:
            raise ValueError("set schedule.warmup_steps or schedule.warmup_ratio, not both")
        return self

    def warmup(self, total_steps: int) -> int:
        if self.warmup_ratio is not None:
            return round(self.warmup_ratio * total_steps)
        return self.warmup_steps or 0

    def lr_at(self, step: int, lr: float, total_steps: int) -> float:
        from infir.train.schedule import lr_at

        return lr_at(step, lr=lr, total_steps=total_steps, warmup_steps=self.warmup(total_steps), schedule=self.kind,
                     min_lr_ratio=self.min_lr_ratio, decay_fraction=self.decay_fraction,
                     decay_shape=self.decay_shape)


class RuntimeConfig(_Part):
    """Precision and speed."""

    dtype: Literal["auto", "bf16", "fp32"] = Field("auto", description="auto: bf16 autocast on GPU, fp32 on CPU.")
    compile: bool = False
    activation_checkpointing: bool = False
    loss_chunk_size: int = Field(8192, ge=1, description="Rows of the chunked linear+CE (full logits never exist).")
    seed: int = 0


class LoggingConfig(_Part):
    interval: int = Field(1, ge=1, description="Steps between metric rows.")
    tensorboard: bool = True
    wandb_project: str | None = None


class CheckpointConfig(_Part):
    interval: int = Field(1000, ge=0, description="Steps between checkpoints; 0 = none (benchmarks).")
    keep: int = Field(3, ge=1, description="Checkpoints kept (the newest).")


# Settings that lived at the top of a stage before the parts existed: old name -> new place.
MOVED = {
    "lr": "optimizer.lr", "weight_decay": "optimizer.weight_decay", "betas": "optimizer.betas",
    "eps": "optimizer.eps", "grad_clip": "optimizer.grad_clip", "max_grad_norm": "optimizer.grad_clip",
    "warmup_steps": "schedule.warmup_steps", "warmup_ratio": "schedule.warmup_ratio",
    "min_lr_ratio": "schedule.min_lr_ratio", "decay_fraction": "schedule.decay_fraction",
    "decay_shape": "schedule.decay_shape", "dtype": "runtime.dtype", "compile": "runtime.compile",
    "activation_checkpointing": "runtime.activation_checkpointing", "loss_chunk_size": "runtime.loss_chunk_size",
    "seed": "runtime.seed", "log_interval": "logging.interval", "tensorboard": "logging.tensorboard",
    "wandb_project": "logging.wandb_project", "checkpoint_interval": "checkpoint.interval",
    "keep_checkpoints": "checkpoint.keep",
}


class Composed(BaseModel):
    """A stage config that embeds the shared parts with its own defaults (`PART_DEFAULTS`)."""

    model_config = ConfigDict(extra="forbid")
    PART_DEFAULTS: ClassVar[dict[str, dict[str, Any]]] = {}
    MOVED: ClassVar[dict[str, str]] = MOVED

    @model_validator(mode="before")
    @classmethod
    def _compose(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        own = set(cls.model_fields)
        moved_keys({k: v for k, v in data.items() if k not in own}, cls.MOVED)
        data = dict(data)
        if isinstance(data.get("schedule"), str):  # shorthand: `schedule: cosine`
            data["schedule"] = {"kind": data["schedule"]}
        for part, defaults in cls.PART_DEFAULTS.items():
            value = data.get(part)
            if value is None:
                data[part] = dict(defaults)
            elif isinstance(value, dict):
                data[part] = {**defaults, **value}
        return data


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


class TrainConfig(Composed):
    """A pretraining or annealing run (§2.4): model, data, length, and the shared parts."""

    # model
    model: str = Field("llama3.2-1b", description="A preset of any architecture in infir.model.registry.presets(): "
                       "llama3.2-1b, tiny, micro (Llama); qwen2.5-0.5b, qwen2.5-1.5b, qwen2.5-7b, qwen2-tiny, "
                       "qwen2-micro (Qwen2).")
    init_from: str | None = Field(None, description="Start from this model folder instead of a preset.")
    vocab_size: int | None = Field(None, description="None: the preset's, or the tokenizer's when larger.")
    # data
    sources: list[DataSource] = Field(default_factory=list, description="Empty: every source in the data dir.")
    seq_len: int = 4096
    shuffle: bool = Field(True, description="Read each source's windows in a seeded random order (by `runtime.seed`), "
                          "new every epoch; false: in stream order.")
    micro_batch_size: int = 4
    global_batch_size: int = Field(2048, description="Sequences per optimizer step, over all ranks.")
    # length: max_steps wins over max_tokens
    max_steps: int | None = None
    max_tokens: int | None = 900_000_000_000
    z_loss: float = 0.0
    # the shared parts
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    # offline evaluations (§2.3)
    eval_interval: int = 1000
    eval: OfflineEvalConfig = Field(default_factory=OfflineEvalConfig)

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
