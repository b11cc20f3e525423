"""Typed settings of corpus curation; defaults are the paper's (FineWeb filters, MinHash 14x8, 10-gram
decontamination). Steps that need a trained model (recall, quality) are off unless configured."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class _Cfg(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LangIdConfig(_Cfg):
    enabled: bool = False
    model_path: Path | None = None  # lid.176.ftz
    languages: list[str] = ["en"]
    min_score: float = 0.65  # FineWeb's threshold
    domains: list[str] = ["web", "math"]


class HeuristicsConfig(_Cfg):
    """FineWeb's filter chain (datatrove 0.10 thresholds) for web and math text; the paper's colon rule."""

    enabled: bool = True
    gopher_repetition: bool = True
    gopher_quality: bool = True
    c4_quality: bool = True  # without the terminal-punctuation line rule, as FineWeb runs it
    fineweb_quality: bool = True
    math_colon: bool = True  # drop math web text that ends with a colon (InfiR §5.1.2)
    domains: list[str] = ["web", "math"]
    # per-filter threshold overrides, e.g. {"gopher_quality": {"min_doc_words": 30}}; defaults = datatrove's
    thresholds: dict[str, dict[str, float | int | bool]] = Field(default_factory=dict)


class CodeRulesConfig(_Cfg):
    enabled: bool = True  # OpenCoder-style rules for records of domain "code"


class RecallConfig(_Cfg):
    """Reasoning-oriented recall: fastText domain classifiers trained on seeds vs random negatives."""

    enabled: bool = False
    seeds: dict[str, list[Path]] = Field(default_factory=dict)  # domain -> seed files (math, code, other)
    threshold: float = 0.5
    top_k: int | None = None
    iterations: int = 2
    negatives_per_positive: float = 1.0
    epochs: int = 10
    seed: int = 0
    domains: list[str] = ["web"]  # records these apply to; recalled ones get metadata domain/recall_score


class MinHashConfig(_Cfg):
    enabled: bool = True
    n_grams: int = 5
    bands: int = 14
    rows: int = 8
    seed: int = 1
    # global clustering runs per partition of the LSH buckets (infir.data.dedup); the kept set does not depend
    # on either setting. None: as many partitions as hold partition_entries band keys each (~60 B apiece at peak)
    partitions: int | None = Field(None, ge=1)
    partition_entries: int = Field(2_000_000, ge=1)


class QualityConfig(_Cfg):
    """FineWeb-Edu style scorer (regression head on sentence embeddings), math 1-5 scorer, code analysis."""

    enabled: bool = False
    encoder_path: Path | None = None  # sentence-transformers folder (e.g. all-MiniLM-L6-v2)
    web_head: Path | None = None  # trained head (.json) scoring 0-5
    web_threshold: float = 3.0
    math_head: Path | None = None  # trained head scoring 1-5
    math_threshold: float = 3.0
    code_static_analysis: bool = True
    max_lint_errors_per_100_lines: float = 5.0


class DecontamConfig(_Cfg):
    enabled: bool = True  # active when benchmark files are given
    n: int = 10
    benchmarks: list[str] = ["gsm8k", "math", "humaneval", "mbpp", "mmlu"]
    mode: str = Field("drop", pattern="^(drop|flag)$")


class CurateConfig(_Cfg):
    langid: LangIdConfig = Field(default_factory=LangIdConfig)
    heuristics: HeuristicsConfig = Field(default_factory=HeuristicsConfig)
    code: CodeRulesConfig = Field(default_factory=CodeRulesConfig)
    recall: RecallConfig = Field(default_factory=RecallConfig)
    minhash: MinHashConfig = Field(default_factory=MinHashConfig)
    quality: QualityConfig = Field(default_factory=QualityConfig)
    decontam: DecontamConfig = Field(default_factory=DecontamConfig)
    output_format: str = Field("jsonl", pattern="^(jsonl|parquet)$")  # shards: NAME.jsonl.gz or NAME.parquet
    max_doc_chars: int = 2_000_000  # larger documents are quarantined as too_large
    default_domain: str = "web"  # for records without metadata "domain" that are not code files
    ray_address: str | None = None  # None: start Ray locally; "auto" or "ray://host:port" for a cluster
    shard_mb: float = Field(64, gt=0)  # a bigger JSONL/Parquet file is cut into record ranges of about this size
