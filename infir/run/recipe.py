"""A recipe: one YAML file that describes a whole run, validated before any work starts.

Each stage section is validated by its own room's config model; this file only composes them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from infir.data.builtin_corpus import BuiltinCorpusConfig
from infir.data.config import CurateConfig, InputSpec
from infir.sft.config import SFTConfig
from infir.train.config import TrainConfig


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


class Recipe(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., pattern=r"^[A-Za-z0-9._-]+$")
    seed: int = 0
    # Folders of the user's own eval task files (infir.eval.tasks): evaluated, decontaminated against, ...
    tasks_dirs: list[Path] = Field(default_factory=list)
    corpus: CorpusStage = Field(default_factory=CorpusStage)
    curate: CurateConfig | None = None
    tokenizer: TokenizerStage | None = None
    pretrain: TrainConfig | None = None
    anneal: TrainConfig | None = None
    sft: SFTConfig | None = None
    long_cot: SFTConfig | None = None  # long-CoT SFT from the instruct model; data in its `sources`
    eval: EvalStage | None = None

    def stage_config(self, stage: str) -> dict[str, Any]:
        value = getattr(self, stage, None)
        return value.model_dump(mode="json") if isinstance(value, BaseModel) else {"value": value}


class RecipeError(ValueError):
    """A recipe that cannot run; the message names each bad field and what was expected."""


def _describe(err: ValidationError, source: str) -> str:
    lines = [f"invalid recipe {source}:"]
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        got = e.get("input")
        shown = "" if isinstance(got, dict) else f" (got {got!r})"
        lines.append(f"  - {where}: {e['msg']}{shown}")
    return "\n".join(lines)


def parse_recipe(data: dict[str, Any], source: str = "<recipe>") -> Recipe:
    try:
        return Recipe.model_validate(data)
    except ValidationError as e:
        raise RecipeError(_describe(e, source)) from None


def load_recipe(path: str | Path) -> Recipe:
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise RecipeError(f"invalid recipe {path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise RecipeError(f"invalid recipe {path}: expected a mapping at the top level, got {type(data).__name__}")
    return parse_recipe(data, str(path))


def config_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]
