"""InfiR-VL: a SigLIP vision tower, a Linear-GELU-Linear projector and an infir language model (any registered
architecture: Llama as in the paper, or Qwen2).

Every image becomes `num_image_tokens` feature vectors (729 for SigLIP-So400m/14 at 384 px: all
27x27 patches, no CLS token). The text holds that many copies of the image token; their
embeddings are replaced, in order, by the projected features. Samples with one image, several
images or none batch together: `pixel_values` stacks the batch's images in reading order.

Folder layout written by `save_vlm` (each part loads with its own library):

    config.json               {"model_type": "infir_vl", image token, projector sizes, preprocessing}
    vision/                   a transformers SiglipVisionModel folder (+ preprocessor_config.json)
    projector.safetensors     linear_1.{weight,bias}, linear_2.{weight,bias}
    lm/                       an infir / HF language model folder (LlamaForCausalLM, Qwen2ForCausalLM) with the tokenizer
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from infir.model.hf_io import load_model, save_model
from infir.utils.io import atomic_path
from infir.utils.log import get_logger
from infir.vlm.config import VisionConfig

log = get_logger(__name__)

SO400M = dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16,
              image_size=384, patch_size=14)


def build_vision_tower(cfg: VisionConfig):
    """A SiglipVisionModel: loaded from `cfg.path`, else the So400m/14-384 or a tiny architecture (random)."""
    from transformers import SiglipVisionConfig, SiglipVisionModel

    if cfg.path is not None:
        log.info("loading vision tower from %s", cfg.path)
        return SiglipVisionModel.from_pretrained(str(cfg.path))
    if cfg.preset == "so400m-384":
        vcfg = SiglipVisionConfig(**SO400M)
    else:
        vcfg = SiglipVisionConfig(hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
                                  num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
                                  image_size=cfg.image_size, patch_size=cfg.patch_size, vision_use_head=False)
    log.info("building a randomly initialised SigLIP vision tower (%s)", cfg.preset)
    tower = SiglipVisionModel(vcfg)
    if cfg.preset == "tiny" and cfg.position_init_std is not None:
        nn.init.normal_(tower.embeddings.position_embedding.weight, std=cfg.position_init_std)
    return tower


class Projector(nn.Module):
    """LLaVA-1.5's mlp2x_gelu: Linear -> GELU -> Linear."""

    def __init__(self, vision_hidden: int, lm_hidden: int, hidden: int | None = None) -> None:
        super().__init__()
        hidden = hidden or lm_hidden
        self.linear_1 = nn.Linear(vision_hidden, hidden)
        self.act = nn.GELU()
        self.linear_2 = nn.Linear(hidden, lm_hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(x)))


class VisionLanguageModel(nn.Module):
    def __init__(self, vision: nn.Module, projector: Projector, lm: nn.Module, image_token_id: int,
                 preprocessing: dict[str, Any]) -> None:
        super().__init__()
        self.vision, self.projector, self.lm = vision, projector, lm
        self.image_token_id = image_token_id
        self.preprocessing = preprocessing  # image_size, aspect, mean, std

    @property
    def image_size(self) -> int:
        return int(self.vision.config.image_size)

    @property
    def num_image_tokens(self) -> int:
        return (self.vision.config.image_size // self.vision.config.patch_size) ** 2

    def components(self) -> dict[str, nn.Module]:
        return {"vision": self.vision, "projector": self.projector, "lm": self.lm}

    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[N, 3, S, S] -> [N, num_image_tokens, lm_hidden]: every patch, projected."""
        dtype = next(self.vision.parameters()).dtype
        patches = self.vision(pixel_values=pixel_values.to(dtype)).last_hidden_state
        return self.projector(patches.to(self.projector.linear_1.weight.dtype))

    def embed(self, input_ids: torch.Tensor, pixel_values: torch.Tensor | None) -> torch.Tensor:
        """Token embeddings with the image-token slots replaced by image features."""
        embeds = self.lm.embed_tokens(input_ids)
        slots = input_ids == self.image_token_id
        n_slots = int(slots.sum())
        n_images = 0 if pixel_values is None else pixel_values.shape[0]
        if n_slots != n_images * self.num_image_tokens:
            raise ValueError(f"{n_slots} image-token slots in the text but {n_images} images x "
                             f"{self.num_image_tokens} features")
        if n_images == 0:
            return embeds
        feats = self.image_features(pixel_values).to(embeds.dtype)
        return embeds.masked_scatter(slots.unsqueeze(-1), feats.reshape(-1, feats.shape[-1]))

    def forward(self, input_ids: torch.Tensor, pixel_values: torch.Tensor | None = None,
                return_hidden: bool = False, **lm_kwargs: Any) -> torch.Tensor:
        embeds = self.embed(input_ids, pixel_values)
        return self.lm(input_ids, inputs_embeds=embeds, return_hidden=return_hidden, **lm_kwargs)

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        """Summed next-token cross-entropy over labels != -100, and that label count.

        Only labelled positions reach the output layer (most positions are image tokens or
        prompt), and the trainer's chunked linear + cross-entropy never holds all their logits.
        """
        from infir.train.loss import linear_cross_entropy

        hidden = self(batch["input_ids"], batch.get("pixel_values"), return_hidden=True,
                      position_ids=batch.get("position_ids"))
        labels = batch["labels"]
        keep = labels != -100
        loss, _ = linear_cross_entropy(hidden[keep], self.lm.lm_head.weight, labels[keep])
        return loss, int(keep.sum())


def build_vlm(vision_cfg: VisionConfig, lm: nn.Module, tokenizer: Any, image_token: str,
              projector_hidden: int | None = None) -> VisionLanguageModel:
    vision = build_vision_tower(vision_cfg)
    image_token_id = tokenizer.convert_tokens_to_ids(image_token)
    if not isinstance(image_token_id, int) or image_token_id == tokenizer.unk_token_id or image_token_id < 0:
        raise ValueError(f"image token {image_token!r} is not in the tokenizer's vocabulary")
    if image_token_id >= lm.config.vocab_size:
        raise ValueError(f"image token id {image_token_id} >= LM vocab size {lm.config.vocab_size}")
    projector = Projector(vision.config.hidden_size, lm.config.hidden_size, projector_hidden)
    prep = {"image_size": int(vision.config.image_size), "aspect": vision_cfg.aspect,
            "mean": list(vision_cfg.image_mean), "std": list(vision_cfg.image_std)}
    return VisionLanguageModel(vision, projector, lm, image_token_id, prep)


def _image_processor(prep: dict[str, Any]):
    from transformers import SiglipImageProcessor

    size = prep["image_size"]
    return SiglipImageProcessor(size={"height": size, "width": size}, image_mean=prep["mean"],
                                image_std=prep["std"])


def save_vlm(model: VisionLanguageModel, out_dir: str | Path, tokenizer: Any, image_token: str,
             extra: dict[str, Any] | None = None) -> Path:
    """Write the folder described in the module docstring, atomically."""
    out_dir = Path(out_dir)
    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        model.vision.save_pretrained(str(tmp / "vision"))
        _image_processor(model.preprocessing).save_pretrained(str(tmp / "vision"))
        state = {k: v.detach().contiguous().cpu().float() for k, v in model.projector.state_dict().items()}
        save_file(state, str(tmp / "projector.safetensors"), metadata={"format": "pt"})
        save_model(model.lm, tmp / "lm", tokenizer=tokenizer)
        config = {
            "architectures": ["InfirVLForConditionalGeneration"],
            "model_type": "infir_vl",
            "image_token": image_token,
            "image_token_id": model.image_token_id,
            "num_image_tokens": model.num_image_tokens,
            "projector": {"in_features": model.projector.linear_1.in_features,
                          "hidden_size": model.projector.linear_1.out_features,
                          "out_features": model.projector.linear_2.out_features, "act": "gelu"},
            "preprocessing": model.preprocessing,
            "vision_dir": "vision", "lm_dir": "lm", "projector_file": "projector.safetensors",
            **(extra or {}),
        }
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    log.info("saved InfiR-VL model to %s", out_dir)
    return out_dir


def load_vlm(path: str | Path, device: str | torch.device = "cpu",
             dtype: torch.dtype | None = None) -> tuple[VisionLanguageModel, Any]:
    """Load a folder written by `save_vlm`: (model in eval mode, tokenizer)."""
    from transformers import SiglipVisionModel

    from infir.model.tokenizer import load_tokenizer

    path = Path(path)
    cfg = json.loads((path / "config.json").read_text())
    if cfg.get("model_type") != "infir_vl":
        raise ValueError(f"{path}: not an InfiR-VL folder (model_type={cfg.get('model_type')!r})")
    vision = SiglipVisionModel.from_pretrained(str(path / cfg["vision_dir"]))
    lm = load_model(path / cfg["lm_dir"])
    p = cfg["projector"]
    projector = Projector(p["in_features"], p["out_features"], p["hidden_size"])
    projector.load_state_dict(load_file(str(path / cfg["projector_file"])))
    model = VisionLanguageModel(vision, projector, lm, int(cfg["image_token_id"]), cfg["preprocessing"])
    if dtype is not None:
        model = model.to(dtype)
    tokenizer = load_tokenizer(path / cfg["lm_dir"])
    return model.to(device).eval(), tokenizer
