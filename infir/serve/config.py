"""Typed settings of the server and of the export stage."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ServerConfig(BaseModel):
    """How `infir serve` batches and bounds work."""

    model_config = ConfigDict(extra="forbid")
    model_name: str | None = Field(None, description="Name clients pass as `model` (default: folder name).")
    max_batch_size: int = Field(8, ge=1, description="Sequences decoded together at most.")
    max_queue: int = Field(64, ge=1, description="Waiting requests before new ones get HTTP 429.")
    batch_window_ms: float = Field(5.0, ge=0, description="How long to gather concurrent requests.")
    max_n: int = Field(4, ge=1, description="Most choices (`n`) per request.")
    default_max_tokens: int = Field(512, ge=1, description="Chat completion length when max_tokens is absent.")
    quantize: Literal["int8", "int4", "int8-dynamic"] | None = Field(None, description="Weight-only CPU quantization.")


class ExportConfig(BaseModel):
    """The `export` stage: which formats a finished model leaves in."""

    model_config = ConfigDict(extra="forbid")
    formats: list[Literal["hf", "gguf"]] = Field(default_factory=lambda: ["hf", "gguf"])
    gguf_quant: Literal["f32", "f16", "q8_0"] = "q8_0"
    hf_dtype: Literal["float32", "bfloat16", "float16"] | None = None
