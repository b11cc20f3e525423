"""A recipe: one YAML file that describes a whole run, validated before any work starts.

Each stage section is validated by its own room's config model; this file only composes them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from infir.data.anneal import AnnealDataConfig
from infir.data.builtin_corpus import BuiltinCorpusConfig
from infir.data.config import CurateConfig, InputSpec
from infir.serve.config import ExportConfig
from infir.sft.config import SFTConfig
from infir.synth.config import LongCoTDataStage, SFTDataStage, SynthStage
from infir.train.config import TrainConfig
from infir.utils.config import ConfigError, apply_overrides, deep_merge, read_yaml, validate
from infir.vlm.config import VLMConfig


class CorpusStage(BaseModel):
    """Where the raw corpus comes from: the embedded one, or real files under --data-dir."""

    model_config = ConfigDict(extra="forbid")

    builtin: BuiltinCorpusConfig | None = Field(default_factory=BuiltinCorpusConfig)  # null: no embedded corpus
    # Real corpus files (JSONL(.gz/.zst), Parquet, WARC/WET, folders); globs are expanded. An entry is a path
    # (its domain detected from the release format) or {path, domain, source, language} (infir/data/config.py).
    inputs: list[str | InputSpec] = Field(default_factory=list)
    # With --data-dir/INFIR_DATA: these files (relative to it) replace the embedded corpus.
    data_dir_files: list[str] = Field(
        default_factory=lambda: [
            "corpus/llamafactory/c4_demo.jsonl",
            "corpus/dolma_testdata/multiple_files_cc_en_head-0091.jsonl.gz",
            "corpus/dolma_testdata/multiple_files_cc_en_head-0174.jsonl.gz",
            "corpus/llamafactory/wiki_demo.txt",
        ]
    )
    # ... and these SFT files join the embedded math chats.
    data_dir_sft_files: list[str] = Field(default_factory=lambda: ["sft/llamafactory/alpaca_en_demo.json"])


class TokenizerStage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    vocab_size: int = Field(2048, ge=300)
    path: Path | None = None  # load this tokenizer (HF folder or tiktoken file) instead of training one
    max_training_chars: int = 20_000_000


class EvalStage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tasks: list[str] = Field(default_factory=lambda: ["nll", "gsm8k"])
    limit: int | None = 60
    max_new_tokens: int = 128
    mode: str = Field("chat", pattern="^(base|chat)$")
    # With --data-dir the real benchmarks replace the embedded ones, and these tasks are added.
    real_data_tasks: list[str] = Field(default_factory=lambda: ["humaneval"])


class BaseEvalStage(EvalStage):
    """The base model's few-shot evaluation (paper Table 1)."""

    tasks: list[str] = Field(default_factory=lambda: ["gsm8k"])
    mode: str = Field("base", pattern="^base$")


class LongCoTEvalStage(EvalStage):
    """The long-CoT model's zero-shot evaluation (paper Table 6): long generations."""

    tasks: list[str] = Field(default_factory=lambda: ["gsm8k"])
    max_new_tokens: int = 4096
    mode: str = Field("chat", pattern="^chat$")
    real_data_tasks: list[str] = Field(default_factory=lambda: ["aime24", "math500", "amc23", "gpqa",
                                                                "olympiadbench"])


class VLEvalStage(BaseModel):
    """The VLM's evaluation (paper Table 3): MMMU through the VLM, ScreenSpot from the vlm stage's grounding eval,
    AndroidWorld listed (it needs an Android emulator)."""

    model_config = ConfigDict(extra="forbid")
    # MMMU rows (a file or folder in the release format); default: DATA_DIR/mmmu with --data-dir, else the
    # stand-in questions about the VLM's held-out toy screens.
    mmmu_rows: Path | None = None
    mmmu_images: list[Path] = Field(default_factory=list)  # folders searched for the rows' image paths first
    mmmu_split: str = "validation"
    limit: int | None = None
    standin_questions: int = Field(40, ge=1)
    max_new_tokens: int = Field(32, ge=1)
    batch_size: int = Field(16, ge=1)
    device: str = "auto"


class ExportStage(ExportConfig):
    """Export for the edge: HF and GGUF files of a text model of the run (README: llama.cpp, llama-quantize)."""

    model: str | None = None  # the stage whose model is exported (default: the latest text model before export)


class Recipe(BaseModel):
    """The whole paper is one recipe: each section switches its stage on (infir.run.stages.STAGES, in order)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., pattern=r"^[A-Za-z0-9._-]+$")
    seed: int = 0
    # Folders of the user's own eval task files (infir.eval.tasks): evaluated, decontaminated against, ...
    tasks_dirs: list[Path] = Field(default_factory=list)
    corpus: CorpusStage | None = Field(default_factory=CorpusStage)  # null: no corpus (e.g. a VLM-only recipe)
    curate: CurateConfig | None = None
    tokenizer: TokenizerStage | None = None
    pretrain: TrainConfig | None = None
    anneal_data: AnnealDataConfig | None = None  # Table 8's mixture (infir/data/anneal.py), trained on by `anneal`
    anneal: TrainConfig | None = None
    eval_base: BaseEvalStage | None = None  # Table 1: the base model, few-shot
    synth: SynthStage | None = None  # SFT data synthesis: seeds -> evolve -> teacher -> reject -> label
    sft_data: SFTDataStage | None = None  # synthesised + open-source sets, judged and diversity-sampled
    sft: SFTConfig | None = None
    eval: EvalStage | None = None  # Table 2 (mode chat: the instruct model, zero-shot)
    long_cot_data: LongCoTDataStage | None = None  # long traces + solved / domain / length labels for s1
    long_cot: SFTConfig | None = None  # long-CoT SFT from the instruct model; data: long_cot_data, `sources`
    eval_long_cot: LongCoTEvalStage | None = None  # Table 6
    vlm: VLMConfig | None = None  # InfiR-VL stages 1-3 on the base model (or vlm.lm)
    eval_vl: VLEvalStage | None = None  # Table 3
    export: ExportStage | None = None  # HF + GGUF for the edge

    @model_validator(mode="after")
    def _anneal_data(self) -> Recipe:
        if self.anneal_data is not None and self.anneal is not None and self.anneal.sources:
            raise ValueError("anneal.sources: with an anneal_data section the mixture's shares are "
                             "anneal_data.sources' weights; remove anneal.sources (training reads the mixture as built)")
        return self

    def stage_config(self, stage: str) -> dict[str, Any]:
        value = getattr(self, stage, None)
        return value.model_dump(mode="json") if isinstance(value, BaseModel) else {"value": value}


class RecipeError(ConfigError):
    """A recipe that cannot run; the message names each bad field and what was expected."""


def parse_recipe(data: dict[str, Any], source: str = "<recipe>") -> Recipe:
    try:
        return validate(Recipe, data, f"recipe {source}")
    except ConfigError as e:
        raise RecipeError(str(e)) from None


def load_recipe(path: str | Path, overlays: Sequence[str | Path] = (), overrides: Sequence[str] = ()) -> Recipe:
    """A recipe file, with overlays deep-merged over it in order (a miniature overlay changes sizes and local
    paths) and `--set key=value` overrides applied last; validated before any work."""
    try:
        data = read_yaml(path)
        for overlay in overlays:
            data = deep_merge(data, read_yaml(overlay))
        data = apply_overrides(data, overrides)
    except ConfigError as e:
        raise RecipeError(str(e).replace("config file not found", "recipe not found")) from None
    source = str(path) + "".join(f" + {o}" for o in overlays)
    return parse_recipe(data, source)


def config_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]
