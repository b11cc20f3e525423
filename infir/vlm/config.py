"""Typed configuration of the InfiR-VL room: model, data, the three-stage curriculum, evaluation.

Stages are declarative (TinyLLaVA Factory style): each names the data it reads and a tune type
per component (`frozen` or `full`). The defaults are the paper's: SigLIP-So400m/14-384 vision tower,
a Linear-GELU-Linear projector, InfiR-1B as the LM; stage 1 trains the projector on captions,
stage 2 the ViT + projector on text rendering and GUI data plus retained captions, stage 3
everything on the hardest samples (GUI trajectories, tool use).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from infir.train.config import Composed, OptimizerConfig, RuntimeConfig, ScheduleConfig

TuneType = Literal["frozen", "full"]
# grounding_single: grounding on one-element screens (SynthConfig.single_element_screens), an easy first step;
# referring: the inverse of grounding (a point in, the element's name out)
DataKind = Literal["caption", "ocr", "grounding", "grounding_single", "referring", "trajectory", "llava"]


class VisionConfig(BaseModel):
    """The vision tower. `path` = a local SiglipVisionModel (or full SigLIP) folder; else built from `preset`."""

    model_config = ConfigDict(extra="forbid")
    path: Path | None = None
    preset: Literal["so400m-384", "tiny"] = "so400m-384"
    # Overrides for the "tiny" preset (ignored when loading weights).
    image_size: int = 384
    patch_size: int = 14
    hidden_size: int = 1152
    num_layers: int = 27
    num_heads: int = 16
    intermediate_size: int = 4304
    # Std of the random position-embedding init (tiny preset only; None = SigLIP's own init). At toy
    # scale a larger value keeps "where" distinct from "what" in the random tower's patch features.
    position_init_std: float | None = None
    aspect: Literal["pad", "squash"] = "pad"  # how non-square images become square
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    image_std: tuple[float, float, float] = (0.5, 0.5, 0.5)


class ProjectorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hidden_size: int | None = None  # None = the LM's hidden size (LLaVA-1.5 style mlp2x_gelu)


class StageConfig(Composed):
    """One curriculum stage: which data, which components train, and the trainer's optimizer and schedule parts
    (infir.train.config) with LLaVA-style defaults (the paper gives no learning rates)."""

    PART_DEFAULTS: ClassVar[dict[str, dict[str, Any]]] = {
        "optimizer": {"lr": 1e-3, "weight_decay": 0.0, "betas": (0.9, 0.999), "grad_clip": 1.0},
        "schedule": {"kind": "cosine", "warmup_steps": None, "warmup_ratio": 0.03, "min_lr_ratio": 0.0},
    }
    name: str
    data: dict[DataKind, float] = Field(default_factory=lambda: {"caption": 1.0})  # kind -> share
    num_samples: int = 1000  # samples drawn for the stage (the shares split this number)
    vision: TuneType = "frozen"
    projector: TuneType = "full"
    lm: TuneType = "frozen"
    epochs: float = 1.0
    batch_size: int = 8
    grad_accum: int = 1
    max_length: int = 4096
    eval_every: int = 0  # optimizer steps between held-out grounding checks during the stage (0 = none)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)


class CleanConfig(BaseModel):
    """Image-text similarity cleaning (paper §4.1.2, App. E)."""

    model_config = ConfigDict(extra="forbid")
    encoder_path: Path | None = None  # local CLIP / SigLIP dual encoder; None = no cleaning
    threshold: float = 0.5
    batch_size: int = 32
    bins: int = 20


class SynthConfig(BaseModel):
    """Synthetic images: rendered text and GUI screens with known element boxes."""

    model_config = ConfigDict(extra="forbid")
    screen_grid: int = 4  # elements sit in the cells of a grid x grid layout
    min_elements: int = 3
    max_elements: int = 6
    render_width: int = 256  # pixels of the rendered screen (long side)
    platforms: list[Literal["mobile", "desktop", "web"]] = Field(
        default_factory=lambda: ["mobile", "desktop", "web"])
    train_screens: int = 20_000  # screens rendered for training (captions, grounding, trajectories)
    ocr_images: int = 20_000  # rendered-text images (OCR / QA)
    eval_screens: int = 200  # held-out screens for the grounding and step-accuracy evaluation
    single_element_screens: int = 0  # one-element screens for the "grounding_single" pool (curricula)
    seed: int = 0


class EvalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    screenspot_dir: Path | None = None  # a folder with images/annotations.jsonl (real ScreenSpot)
    max_new_tokens: int = 48
    trajectory_max_new_tokens: int = 96
    trajectory_episodes: int = 50  # held-out episodes for the AndroidControl-style step accuracy
    batch_size: int = 32


class ToyLMConfig(BaseModel):
    """The toy LM made when no LM folder is given (toy CPU runs; real runs start from a pretrained InfiR LM)."""

    model_config = ConfigDict(extra="forbid")
    preset: Literal["micro", "tiny"] = "micro"
    num_hidden_layers: int | None = None  # overrides the preset's depth
    init_std: float = 0.15  # see infir.vlm.tiny.make_tiny_lm
    vocab_size: int = 512
    text_warmup_steps: int = 0  # next-token steps on the VLM texts before stage 1 (see warm_up_on_texts)


class VLMConfig(Composed):
    PART_DEFAULTS: ClassVar[dict[str, dict[str, Any]]] = {"runtime": {}}
    # The LM the VLM is built on (paper §4.3: InfiR-1B-Base): an infir/HF Llama folder with its tokenizer.
    # `infir vlm train --lm` overrides it; in `infir run` the base model of the run's anneal/pretrain stage is
    # used when it is null.
    lm: Path | None = None
    vision: VisionConfig = Field(default_factory=VisionConfig)
    projector: ProjectorConfig = Field(default_factory=ProjectorConfig)
    # the tokenizer token image features replace; null: the one the registry names for the tokenizer's family
    # (Llama 3: <|reserved_special_token_3|>, Qwen2.5: <|image_pad|>)
    image_token: str | None = None
    llava_json: list[Path] = Field(default_factory=list)  # extra real LLaVA-format data (kind "llava")
    clean: CleanConfig = Field(default_factory=CleanConfig)
    synth: SynthConfig = Field(default_factory=SynthConfig)
    stages: list[StageConfig] = Field(default_factory=lambda: paper_stages())
    eval: EvalConfig = Field(default_factory=EvalConfig)
    toy_lm: ToyLMConfig = Field(default_factory=ToyLMConfig)
    image_cache_size: int = 4096  # preprocessed images kept in memory (uint8)
    device: str = "auto"
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)  # dtype auto: bf16 autocast on GPU; seed


def paper_stages() -> list[StageConfig]:
    """The paper's curriculum (§4.3); learning rates follow LLaVA-style practice (the paper gives none)."""
    return [
        StageConfig.model_validate(dict(
            name="stage1-align", data={"caption": 1.0}, num_samples=558_000, vision="frozen", projector="full",
            lm="frozen", batch_size=32, grad_accum=8, optimizer={"lr": 1e-3}, max_length=2048)),
        StageConfig.model_validate(dict(
            name="stage2-vision", data={"ocr": 0.45, "grounding": 0.4, "caption": 0.15}, num_samples=1_000_000,
            vision="full", projector="full", lm="frozen", batch_size=16, grad_accum=8, optimizer={"lr": 2e-5},
            max_length=4096)),
        StageConfig.model_validate(dict(
            name="stage3-all", data={"trajectory": 0.6, "grounding": 0.3, "ocr": 0.1}, num_samples=300_000,
            vision="full", projector="full", lm="full", batch_size=16, grad_accum=8, optimizer={"lr": 2e-5},
            max_length=4096)),
    ]


def load_vlm_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> VLMConfig:
    """Read a VLM YAML: either the VLMConfig itself or a document with a top-level `vlm:` key (+ `--set`)."""
    from infir.utils.config import load_config

    return load_config(VLMConfig, path, section="vlm", overrides=overrides)
