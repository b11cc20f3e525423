"""Configuration of SFT data synthesis (paper §3.1, App. A.2, B.1–B.2, C.2)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

EVOLUTION_OPS = ("deepen", "constraints", "concretise", "broaden", "reasoning")
DOMAINS = ("math", "code", "reasoning", "knowledge", "writing", "general")


class TeacherConfig(BaseModel):
    """How to reach the teacher (an OpenAI-compatible URL or a local model folder)."""

    model_config = ConfigDict(extra="forbid")
    # Where it is: an OpenAI-compatible URL, a local model folder, `scripted` (the embedded demo's stand-in
    # solver, infir.synth.scripted) or, in a recipe, the name of a model-producing stage ("sft").
    # `infir synth --teacher` overrides it.
    source: str | None = None
    model: str | None = None  # model name sent to the endpoint; None = the first one /v1/models lists
    api_key_env: str = "OPENAI_API_KEY"  # environment variable holding the key (may be unset for local)
    concurrency: int = Field(8, ge=1)
    max_retries: int = Field(5, ge=0)
    backoff_s: float = Field(0.5, ge=0)  # first retry delay; doubles each retry (plus jitter)
    request_timeout_s: float = Field(120.0, gt=0)
    temperature: float = Field(0.7, ge=0)  # for response candidates; evolution and judging use their own
    max_tokens: int = Field(2048, ge=1)
    cache: bool = True


class EvolveConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    ops: list[str] = Field(default_factory=lambda: list(EVOLUTION_OPS))
    per_seed: int = Field(1, ge=0)  # evolved variants per seed (ops taken round-robin by seed)
    rounds: int = Field(1, ge=1)  # evolve the evolved again (Evol-Instruct depth)
    keep_seeds: bool = True  # the original instructions stay in the pool too
    temperature: float = Field(0.7, ge=0)
    max_tokens: int = Field(512, ge=1)
    min_chars: int = Field(20, ge=0)  # shorter evolutions are failures
    max_copy_similarity: float = Field(0.95, ge=0, le=1)  # near-copies of the parent are failures


class ResponseConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    candidates: int = Field(4, ge=1)  # N responses per instruction for rejection sampling
    step_by_step: bool = True


class RejectConfig(BaseModel):
    """Rejection sampling. Which candidate is kept when several pass every check: with a reward model, the
    highest reward (best-of-N); without one, `choice` (written into every kept record's provenance):
    "first_passing" = the lowest-index candidate that passed (candidates are independent teacher samples, so
    this is a uniform draw when the teacher sampled at temperature > 0, and deterministic);
    "shortest_passing" = the fewest characters (ties: lower index); "random_passing" = a draw seeded by
    `choice_seed` and the record id (reproducible across runs and processes)."""

    model_config = ConfigDict(extra="forbid")
    reward_model: Path | None = None  # local HF AutoModelForSequenceClassification folder
    reward_batch_size: int = Field(8, ge=1)
    min_reward: float | None = None  # drop the best candidate if it scores below this
    choice: Literal["first_passing", "shortest_passing", "random_passing"] = "first_passing"
    choice_seed: int = 0
    math_check: bool = True  # final-answer equivalence with the seed's reference, where one exists
    code_check: bool = True  # run teacher-written tests with the solution in the sandbox
    code_timeout_s: float = Field(10.0, gt=0)
    code_memory_mb: int = Field(1024, ge=64)
    code_workers: int | None = None
    min_chars: int = Field(50, ge=0)
    max_chars: int = Field(16000, ge=1)
    min_reasoning_steps: int = Field(2, ge=0)  # lines/sentences that look like steps


class LabelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    domains: list[str] = Field(default_factory=lambda: list(DOMAINS))
    min_quality: int = Field(3, ge=1, le=5)  # judged quality below this is dropped
    keep_unjudged: bool = True  # a judgement that cannot be parsed keeps the record (counted in stats)
    max_tokens: int = Field(256, ge=1)


class SelectConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_records: int | None = None  # None = keep all that passed
    balance_difficulty: bool = True  # within a domain, draw evenly across difficulty levels (App. B.2)
    seed: int = 0


class SynthConfig(BaseModel):
    """Everything `infir synth` / `run_synth` needs besides seeds, teacher and output folder."""

    model_config = ConfigDict(extra="forbid")
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    evolve: EvolveConfig = Field(default_factory=EvolveConfig)
    respond: ResponseConfig = Field(default_factory=ResponseConfig)
    reject: RejectConfig = Field(default_factory=RejectConfig)
    label: LabelConfig = Field(default_factory=LabelConfig)
    select: SelectConfig = Field(default_factory=SelectConfig)
    max_seeds: int | None = None  # read at most this many seed records (over all files)
    batch_size: int = Field(32, ge=1)  # items in flight per step (each line is written when done)


class SynthStage(SynthConfig):
    """The `synth` stage of `infir run`: the synthesis settings plus where the seeds come from."""

    seeds: list[str] = Field(default_factory=list)  # seed files / folders / globs; relative: --data-dir first
    embedded_seeds: int = Field(0, ge=0)  # the first N generated problems of the embedded corpus (math_train)


class SFTSetSpec(BaseModel):
    """An open-source SFT set (any chat format infir.data.chats reads) and how much of it to consider."""

    model_config = ConfigDict(extra="forbid")
    path: str
    format: Literal["auto", "alpaca", "sharegpt", "openai", "self_instruct"] = "auto"
    domain: str | None = None  # a hint for records that carry none (the judge labels them anyway)
    max_records: int | None = Field(None, ge=1)  # the first N conversations of the file


class SFTDataStage(BaseModel):
    """The `sft_data` stage (paper §3.1): the synthesised records and open-source SFT sets, labelled by a judge
    (domain, quality, difficulty), filtered by quality and diversity-sampled across domains and difficulties."""

    model_config = ConfigDict(extra="forbid")
    judge: TeacherConfig = Field(default_factory=TeacherConfig)  # judge.source: URL, folder, scripted or a stage
    sets: list[SFTSetSpec] = Field(default_factory=list)  # relative paths: --data-dir first
    data_dir_sets: list[SFTSetSpec] = Field(default_factory=list)  # used only with --data-dir (relative to it)
    embedded_sets: int = Field(0, ge=0)  # N worked problems of the embedded corpus as chats (an open set's stand-in)
    include_synth: bool = True  # the synth stage's records join the pool (already judged there)
    label: LabelConfig = Field(default_factory=LabelConfig)
    select: SelectConfig = Field(default_factory=SelectConfig)
    batch_size: int = Field(32, ge=1)


class DistilConfig(BaseModel):
    """Long traces asked of a teacher for seed problems (how NuminaMath-QwQ-CoT was made, at toy scale)."""

    model_config = ConfigDict(extra="forbid")
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    seeds: list[str] = Field(default_factory=list)
    embedded_seeds: int = Field(0, ge=0)
    max_tokens: int = Field(4096, ge=1)
    temperature: float = Field(0.7, ge=0)
    verify: bool = True  # keep a trace only when its final answer matches the seed's reference (where known)


class LongCoTDataStage(BaseModel):
    """The `long_cot_data` stage (paper App. D, s1-style): long reasoning traces with the labels s1 selects on,
    computed here: solved (does a reference model the recipe names already solve the problem?), domain (a judge's
    label, else the record's own) and trace length. The long_cot stage's `selection.s1_subset` then selects."""

    model_config = ConfigDict(extra="forbid")
    pool: list[str] = Field(default_factory=list)  # trace files (messages, s1K, problem/solution); --data-dir first
    distil: DistilConfig | None = None
    reference: TeacherConfig = Field(default_factory=TeacherConfig)  # reference.source: URL, folder, scripted, stage
    reference_max_tokens: int = Field(1024, ge=1)
    judge: TeacherConfig | None = None  # labels the domain; None: the record's source/subject/type, else a hint
    domains: list[str] = Field(default_factory=lambda: ["algebra", "geometry", "number theory", "counting",
                                                        "calculus", "arithmetic", "other"])
    max_records: int | None = Field(None, ge=1)
    batch_size: int = Field(32, ge=1)


def load_synth_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> SynthConfig:
    """A SynthConfig from a YAML file (or a recipe's `synth:` section) plus `--set` overrides; None: defaults."""
    from infir.utils.config import load_config

    return load_config(SynthConfig, path, section="synth", overrides=overrides)
