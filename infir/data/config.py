"""Typed settings of corpus curation; defaults are the paper's (FineWeb filters on web pages, the colon rule on
math, OpenCoder-style rules on Python/JavaScript/Java/C, MinHash 14x8, 10-gram decontamination). Steps that need
a trained model (recall, model-based quality) are off unless configured.

Which steps a document goes through depends on its domain: `steps` lists them per domain, in order, with
`minhash` (the global dedup barrier) between the per-document steps before and after it (infir/data/steps.py
holds the registry of step names). Without `steps`, the lists come from the switches below.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# The domains a corpus input can be (Table 7's source types); recall adds "other" (reasoning text of other
# domains). A domain is routed to its own list of steps.
DOMAINS = ("web", "math", "code", "knowledge", "wiki", "instruct", "other")
# The paper's code languages (§2.1.2: "Python, JavaScript, Java, and C").
PAPER_CODE_LANGUAGES = ["python", "javascript", "java", "c"]
# The names of the curation steps (infir/data/steps.py REGISTRY holds one entry per name; a test keeps the two
# equal). "minhash" is the global dedup barrier.
STEP_NAMES = (
    "langid", "heuristics", "gopher_repetition", "gopher_quality", "c4_quality", "fineweb_quality",
    "math_colon", "code_language", "code_rules", "recall", "minhash", "quality", "quality_edu", "quality_math",
    "code_analysis", "decontam",
)  # fmt: skip


class _Cfg(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InputSpec(_Cfg):
    """One corpus input: a file, folder or glob, what domain it is, and optionally its source name and language.

    Without `domain`, infir detects it per record from the release format (Stack rows -> code, OpenWebMath
    -> math, ...) and otherwise uses `curate.default_domain`, counted as "assumed" in the report.
    `language` is the programming language of code inputs (e.g. StarCoderData's per-language folders) or the
    natural language of text inputs (kept as metadata).
    """

    path: str
    domain: str | None = None
    source: str | None = None  # e.g. "fineweb-edu"; default: the release format detected, else the file name
    language: str | None = None

    @field_validator("domain")
    @classmethod
    def _known_domain(cls, v: str | None) -> str | None:
        if v is not None and v not in DOMAINS:
            raise ValueError(f"unknown domain {v!r}; choose from {', '.join(DOMAINS)}")
        return v

    @classmethod
    def parse(cls, value: str | dict | InputSpec) -> InputSpec:
        """A spec from a recipe entry: a mapping, or a string `PATH` / `PATH:DOMAIN` (the CLI's form)."""
        if isinstance(value, InputSpec):
            return value
        if isinstance(value, dict):
            return cls.model_validate(value)
        path, sep, domain = str(value).rpartition(":")
        if sep and domain in DOMAINS and path:
            return cls(path=path, domain=domain)
        if sep and domain and "/" not in domain and "\\" not in domain and not Path(str(value)).exists():
            raise ValueError(f"input {value!r}: unknown domain {domain!r}; choose from {', '.join(DOMAINS)}")
        return cls(path=str(value))


class LangIdConfig(_Cfg):
    enabled: bool = False
    model_path: Path | None = None  # lid.176.ftz
    languages: list[str] = ["en"]
    min_score: float = 0.65  # FineWeb's threshold
    domains: list[str] = ["web"]


class HeuristicsConfig(_Cfg):
    """FineWeb's filter chain (datatrove 0.10 thresholds) for web pages; the paper's colon rule for math."""

    enabled: bool = True
    gopher_repetition: bool = True
    gopher_quality: bool = True
    c4_quality: bool = True  # without the terminal-punctuation line rule, as FineWeb runs it
    fineweb_quality: bool = True
    math_colon: bool = True  # drop math web text that ends with a colon (InfiR §5.1.2)
    # Domains the FineWeb chain runs on (when `curate.steps` is not given). Math, code and the curated
    # sources are not web pages: FineWeb's alpha-ratio and `{` rules would drop LaTeX and source code.
    domains: list[str] = ["web"]
    # per-filter threshold overrides, e.g. {"gopher_quality": {"min_doc_words": 30}}; defaults = datatrove's
    thresholds: dict[str, dict[str, float | int | bool]] = Field(default_factory=dict)


class CodeRulesConfig(_Cfg):
    """OpenCoder-style rules for source files, with a language allowlist and rules for each allowed language."""

    enabled: bool = True
    languages: list[str] = Field(default_factory=lambda: list(PAPER_CODE_LANGUAGES))
    # per-rule threshold overrides, e.g. {"max_line_length": {"limit": 2000}} (see infir/data/code_rules.py)
    thresholds: dict[str, dict[str, float | int]] = Field(default_factory=dict)

    @field_validator("languages")
    @classmethod
    def _lower(cls, v: list[str]) -> list[str]:
        from infir.data.code_rules import normalize_language

        out = []
        for lang in v:
            norm = normalize_language(lang)
            if norm is None:
                raise ValueError(f"unknown programming language {lang!r} in code.languages")
            out.append(norm)
        return out


class RecallConfig(_Cfg):
    """Reasoning-oriented recall (§2.1.2): per domain (math, code, other) a fastText classifier trained on seeds
    against negatives sampled uniformly from the pages being recalled from, iterated DeepSeekMath-style."""

    enabled: bool = False
    seeds: dict[str, list[Path]] = Field(default_factory=dict)  # domain -> seed files (math, code, other)
    threshold: float = 0.5
    top_k: int | None = None
    iterations: int = 2  # rounds: each round's recalled pages join the positives of the next
    sample: int = 20_000  # pages drawn uniformly (reservoir) from the whole pool: negatives + expansion pool
    heldout_fraction: float = 0.1  # seeds held out to measure each round's recall
    negatives_per_positive: float = 1.0
    epochs: int = 25  # 10 gave recalls varying 2x with the sampling seed on small pools; 25 is stable
    lr: float = 0.5
    dim: int = 64
    bucket: int = 2_000_000  # fastText's word-bigram hash buckets (a model is dim x bucket floats on disk; tables
    # under 64 MB are raised to 64 MB: smaller ones made fastText diverge, see recall.train_classifier)
    seed: int = 0
    domains: list[str] = ["web"]  # the pool recalled from; a recalled page takes the classifier's domain
    # A page several classifiers recall goes to the first of these (§2.1.2: "we prioritize the retrieval of
    # mathematics-related samples", then code, then other domains); seed domains not listed come last.
    priority: list[str] = ["math", "code", "other"]
    drop_unrecalled: bool = True  # the corpus is reasoning-oriented: pages no classifier recalls are dropped

    @field_validator("seeds")
    @classmethod
    def _seed_domains(cls, v: dict[str, list[Path]]) -> dict[str, list[Path]]:
        for d in v:
            if d not in DOMAINS:
                raise ValueError(f"recall.seeds: unknown domain {d!r}; choose from {', '.join(DOMAINS)}")
        return v


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


class ScorerConfig(_Cfg):
    """A model-based quality scorer: a transformers sequence-classification model with one regression output
    (the FineWeb-Edu classifier's and FineMath classifier's architecture), from a local folder or a hub id."""

    model: str | None = None  # e.g. HuggingFaceFW/fineweb-edu-classifier, or a folder
    min_int_score: int = 3  # keep int_score >= this, as FineWeb-Edu's and FineMath's "3plus" sets do
    domains: list[str] | None = None  # the domains it scores (default: edu -> web, other; math -> math)
    batch_size: int = 32
    max_length: int = 512


class QualityConfig(_Cfg):
    """Quality assessment (§2.1.2): FineWeb-Edu scorer on web text, FineMath scorer on math, static analysis
    (syntax for every allowed language, lint for Python) on code."""

    enabled: bool = False  # model-based scorers on (when `curate.steps` is not given)
    edu: ScorerConfig = Field(default_factory=ScorerConfig)
    math: ScorerConfig = Field(default_factory=ScorerConfig)
    device: str = "auto"  # auto: cuda when present, else cpu
    code_static_analysis: bool = True  # runs whether or not the model-based scorers are on
    max_lint_errors_per_100_lines: float = 5.0

    @model_validator(mode="after")
    def _default_domains(self) -> QualityConfig:
        if self.edu.domains is None:
            self.edu.domains = ["web", "other"]
        if self.math.domains is None:
            self.math.domains = ["math"]
        return self


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
    # Steps per domain, in order (names: infir/data/steps.py REGISTRY); "minhash" marks the global dedup
    # barrier: steps before it run per document before dedup, steps after it on the survivors. A domain not
    # listed gets the default list built from the switches above (`infir.data.steps.default_steps`).
    steps: dict[str, list[str]] | None = None
    output_format: str = Field("jsonl", pattern="^(jsonl|parquet)$")  # shards: NAME.jsonl.gz or NAME.parquet
    max_doc_chars: int = 2_000_000  # larger documents are quarantined as too_large
    default_domain: str = "web"  # for records whose domain neither the input nor its format says ("assumed")
    ray_address: str | None = None  # None: start Ray locally; "auto" or "ray://host:port" for a cluster
    shard_mb: float = Field(64, gt=0)  # a bigger JSONL/Parquet file is cut into record ranges of about this size

    @model_validator(mode="after")
    def _check_steps(self) -> CurateConfig:
        if self.default_domain not in DOMAINS:
            raise ValueError(f"default_domain: unknown domain {self.default_domain!r}; choose from {DOMAINS}")
        for domain, names in (self.steps or {}).items():
            if domain not in DOMAINS:
                raise ValueError(f"steps: unknown domain {domain!r}; choose from {', '.join(DOMAINS)}")
            unknown = [n for n in names if n not in STEP_NAMES]
            if unknown:
                raise ValueError(f"steps.{domain}: unknown step(s) {unknown}; known: {', '.join(STEP_NAMES)}")
            if names.count("minhash") > 1 or len(set(names)) != len(names):
                raise ValueError(f"steps.{domain}: a step is listed twice ({names})")
            if "minhash" in names and not self.minhash.enabled:
                raise ValueError(f"steps.{domain} lists minhash but minhash.enabled is false")
            if "minhash" not in names and self.minhash.enabled:
                raise ValueError(f"steps.{domain} must list minhash, the global dedup barrier (it sits between "
                                 "the per-document steps and the steps on the documents dedup keeps)")
            if "recall" in names and "minhash" in names and names.index("recall") > names.index("minhash"):
                raise ValueError(f"steps.{domain}: recall must come before minhash (it routes pages to domains)")
        return self
