"""The model registry: HF `model_type` -> everything infir needs to build, load, save, chat with and export a model.

Adding an architecture = one file (its config class, module class, presets and GGUF hooks, e.g. `qwen2.py`)
plus one `Architecture` entry below. Everything outside `infir.model` goes through these functions and the
`CausalLM` protocol (`infir.model.base`); no module outside this package imports a concrete architecture
(tests/test_house.py checks it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from infir.model import llama, qwen2
from infir.model.chat_template import (
    CHATML_CHAT_TEMPLATE,
    CHATML_LAYOUT,
    LLAMA3_CHAT_TEMPLATE,
    LLAMA3_LAYOUT,
    ChatLayout,
)


@dataclass(frozen=True)
class Architecture:
    model_type: str  # HF config.json "model_type"
    config_class: type  # a DecoderConfig subclass: from_hf_dict / to_hf_dict / num_parameters
    module_class: type[nn.Module]  # implements infir.model.base.CausalLM
    presets: Mapping[str, Any]  # name -> config
    # HF checkpoint key -> infir state-dict key, or None to drop it (e.g. stale rotary buffers)
    hf_key_adapter: Callable[[str], str | None]
    gguf_arch: str  # llama.cpp's architecture name (gguf.MODEL_ARCH_NAMES)
    gguf_tensor: Callable[[str, torch.Tensor, Any], torch.Tensor]  # (HF name, tensor, config) -> GGUF layout
    gguf_extra_tensors: Callable[[Any], dict[str, torch.Tensor]]  # e.g. Llama 3's rope_freqs
    gguf_hparams: Callable[[Any], dict[str, Any]]  # "{arch}." keys beyond the common ones
    chat_template: str  # Jinja, for tokenizers that bring none
    chat_tokens: tuple[str, ...]  # the special tokens that template writes
    chat_layout: ChatLayout  # the same layout as strings, for encoders that build ids turn by turn (the VLM)
    image_token: str  # the reserved token of the family's tokenizer that a VLM's image features replace
    bos_token: str | None  # prepended to plain text (None: nothing, as Qwen)
    end_of_text: str  # ends a plain document (pretraining)
    end_of_turn: str  # ends an assistant turn (chat)
    other_end_tokens: tuple[str, ...] = ()  # further tokens generation stops at (Llama 3.1+'s <|eom_id|>)

    @property
    def end_tokens(self) -> tuple[str, ...]:
        """The end-of-sequence rule: generation stops at any of these."""
        return (self.end_of_text, self.end_of_turn, *self.other_end_tokens)


def _hf_keys(name: str) -> str | None:
    # Checkpoints written by older transformers carry the (non-persistent here) RoPE buffer.
    return None if name.endswith("rotary_emb.inv_freq") else name


ARCHITECTURES: dict[str, Architecture] = {
    "llama": Architecture(
        model_type="llama", config_class=llama.LlamaConfig, module_class=llama.Llama, presets=llama.PRESETS,
        hf_key_adapter=_hf_keys, gguf_arch="llama", gguf_tensor=llama.gguf_tensor,
        gguf_extra_tensors=llama.gguf_extra_tensors, gguf_hparams=llama.gguf_hparams,
        chat_template=LLAMA3_CHAT_TEMPLATE, chat_tokens=("<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
        chat_layout=LLAMA3_LAYOUT, image_token="<|reserved_special_token_3|>",
        bos_token="<|begin_of_text|>", end_of_text="<|end_of_text|>", end_of_turn="<|eot_id|>",
        # end of a message that continues with a tool result: Llama 3.1/3.2 Instruct's generation_config stops
        # there too (eos [128001, 128008, 128009]), as does llama.cpp
        other_end_tokens=("<|eom_id|>",),
    ),
    "qwen2": Architecture(
        model_type="qwen2", config_class=qwen2.Qwen2Config, module_class=qwen2.Qwen2, presets=qwen2.PRESETS,
        hf_key_adapter=_hf_keys, gguf_arch="qwen2", gguf_tensor=qwen2.gguf_tensor,
        gguf_extra_tensors=qwen2.gguf_extra_tensors, gguf_hparams=qwen2.gguf_hparams,
        chat_template=CHATML_CHAT_TEMPLATE, chat_tokens=("<|im_start|>", "<|im_end|>"),
        chat_layout=CHATML_LAYOUT, image_token="<|image_pad|>",  # Qwen2-VL's image slot token
        bos_token=None, end_of_text="<|endoftext|>", end_of_turn="<|im_end|>",
    ),
}


class UnsupportedArchitecture(ValueError):
    """A config whose model_type infir has no architecture for."""


def supported() -> list[str]:
    return sorted(ARCHITECTURES)


def architecture(model_type: str | None, where: str = "") -> Architecture:
    """The registry entry for a `model_type`; a clear error naming it and the supported ones otherwise."""
    if model_type in ARCHITECTURES:
        return ARCHITECTURES[model_type]
    prefix = f"{where}: " if where else ""
    raise UnsupportedArchitecture(f"{prefix}model_type {model_type!r} is not supported by infir "
                                  f"(supported: {', '.join(supported())})")


def architecture_of(obj: Any) -> Architecture:
    """The entry for a config or a model (anything with `.model_type` or `.config.model_type`)."""
    cfg = getattr(obj, "config", obj)
    return architecture(getattr(cfg, "model_type", None))


def is_supported_config(hf_config: Mapping[str, Any]) -> bool:
    """Whether a config.json dict is an infir language model (VLM folders and unknown types are not)."""
    return hf_config.get("model_type") in ARCHITECTURES and "vision_config" not in hf_config


def config_from_hf(hf_config: Mapping[str, Any], where: str = "") -> Any:
    return architecture(hf_config.get("model_type"), where).config_class.from_hf_dict(dict(hf_config))


# --- presets ---

def presets() -> dict[str, Any]:
    """Every architecture's presets by name (names are unique across architectures)."""
    out: dict[str, Any] = {}
    for arch in ARCHITECTURES.values():
        for name, cfg in arch.presets.items():
            if name in out:
                raise RuntimeError(f"preset {name!r} is defined by two architectures")
            out[name] = cfg
    return out


def preset(name: str, **overrides: Any) -> Any:
    """A copy of a preset config with `overrides` applied (any architecture)."""
    table = presets()
    if name not in table:
        raise ValueError(f"unknown model preset {name!r}; choose from {sorted(table)}")
    return dataclasses.replace(table[name], **overrides)


# --- building ---

def build_model(config: Any, device: Any = None) -> nn.Module:
    """A freshly initialised model of the config's architecture (on `device`: "meta" builds no storage)."""
    cls = architecture_of(config).module_class
    if device is None:
        return cls(config)
    with torch.device(device):
        return cls(config)


def model_from_state(config: Any, state: Mapping[str, torch.Tensor], where: str = "",
                     device: Any = None) -> nn.Module:
    """Build the config's model on the meta device and assign `state` (HF key names) into it.

    Tied heads may be absent from `state`; any other missing or unexpected key is an error naming the keys
    and the architecture.
    """
    arch = architecture_of(config)
    adapted: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        ours = arch.hf_key_adapter(key)
        if ours is not None:
            adapted[ours] = value
    tied = config.tie_word_embeddings
    if tied:
        adapted.pop("lm_head.weight", None)
    model = build_model(config, device="meta")
    missing, unexpected = model.load_state_dict(adapted, strict=False, assign=True)
    missing = [m for m in missing if not (tied and m == "lm_head.weight")]
    if missing or unexpected:
        prefix = f"{where}: " if where else ""
        raise ValueError(f"{prefix}the weights do not match the {arch.model_type} config "
                         f"({arch.module_class.__name__}): missing {_short(missing)}, unexpected {_short(unexpected)}")
    model.tie_weights()
    if device is None:
        device = next(iter(adapted.values())).device if adapted else "cpu"
    model.reset_buffers(device)
    return model


def _short(keys: Iterable[str], n: int = 8) -> str:
    keys = sorted(keys)
    return "[]" if not keys else "[" + ", ".join(keys[:n]) + (f", ... ({len(keys)} in all)" if len(keys) > n else "") + "]"


# --- tokens ---

def end_of_sequence_tokens() -> list[str]:
    """Every registered architecture's end tokens (a tokenizer may come from any family)."""
    seen: list[str] = []
    for arch in ARCHITECTURES.values():
        seen += [t for t in arch.end_tokens if t not in seen]
    return seen


def token_ids(tokenizer: Any, names: Iterable[str]) -> list[int]:
    vocab = tokenizer.get_vocab()
    return [vocab[n] for n in names if n in vocab]


def special_ids(tokenizer: Any, preferred: Architecture | None = None) -> dict[str, Any]:
    """bos / end_of_text / end_of_turn ids from the tokenizer, by the first family whose tokens it has.

    The model's own architecture is tried first; a tokenizer of another family (a Qwen2 model trained with a
    Llama 3 tokenizer) gets that family's tokens.
    """
    vocab = tokenizer.get_vocab()
    order = [preferred] if preferred is not None else []
    order += [a for a in ARCHITECTURES.values() if a is not preferred]
    for arch in order:
        if arch.end_of_text in vocab or arch.end_of_turn in vocab:
            return {"family": arch.model_type, "bos": vocab.get(arch.bos_token) if arch.bos_token else None,
                    "end_of_text": vocab.get(arch.end_of_text), "end_of_turn": vocab.get(arch.end_of_turn)}
    return {"family": None, "bos": getattr(tokenizer, "bos_token_id", None),
            "end_of_text": getattr(tokenizer, "eos_token_id", None), "end_of_turn": None}


def chat_family(tokenizer: Any) -> Architecture | None:
    """The first family whose chat tokens the tokenizer has (None: no family fits). The chat format follows
    the tokenizer, not the model: a Qwen2 model trained with a Llama 3 tokenizer chats in Llama 3's layout."""
    vocab = tokenizer.get_vocab()
    for arch in ARCHITECTURES.values():
        if all(t in vocab for t in arch.chat_tokens):
            return arch
    return None


def default_chat_template(tokenizer: Any) -> str | None:
    """The template of the tokenizer's chat family (None: no family fits)."""
    family = chat_family(tokenizer)
    return family.chat_template if family is not None else None


def _chat_family_or_error(tokenizer: Any) -> Architecture:
    family = chat_family(tokenizer)
    if family is None:
        raise ValueError("the tokenizer has the chat tokens of no supported family ("
                         + "; ".join(f"{a.model_type}: {', '.join(a.chat_tokens)}" for a in ARCHITECTURES.values())
                         + ")")
    return family


def chat_layout(tokenizer: Any) -> ChatLayout:
    """The chat layout of the tokenizer's family; ValueError naming every family's tokens when none fits."""
    return _chat_family_or_error(tokenizer).chat_layout


def image_token(tokenizer: Any) -> str:
    """The token a VLM's image features replace, by the tokenizer's family (Llama 3: a reserved special
    token; Qwen2.5: <|image_pad|>)."""
    return _chat_family_or_error(tokenizer).image_token
