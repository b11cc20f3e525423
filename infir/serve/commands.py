"""`infir serve`, `infir chat`, `infir export`. Imports heavy modules inside the functions."""

from __future__ import annotations

from pathlib import Path

import typer


def _check_model_dir(command: str, model_dir: Path) -> None:
    """A folder infir cannot load (no config.json, an architecture outside the registry, a config it refuses)
    ends the command with the reason and exit code 2 instead of a traceback."""
    from infir.model.hf_io import load_config

    try:
        load_config(model_dir)
    except (FileNotFoundError, ValueError) as e:
        typer.echo(f"infir {command}: {e}", err=True)
        raise typer.Exit(code=2) from None


def serve_command(
    model_dir: Path = typer.Argument(..., help="Model folder (config.json, model.safetensors, tokenizer files)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on (loopback by default)."),
    port: int = typer.Option(8000, "--port", help="TCP port (0 picks a free one)."),
    model_name: str | None = typer.Option(None, "--model-name", help="Name clients pass as `model` "
                                          "(default: the folder name)."),
    max_batch_size: int = typer.Option(8, "--max-batch-size", help="Requests decoded together at most."),
    max_queue: int = typer.Option(64, "--max-queue", help="Waiting requests before new ones get 429."),
    batch_window_ms: float = typer.Option(5.0, "--batch-window-ms", help="How long the batcher waits "
                                          "to gather concurrent requests."),
    quantize: str | None = typer.Option(None, "--quantize", help="CPU quantization: int8 or int4 (weight-only) or int8-dynamic."),
) -> None:
    """OpenAI-compatible server: /v1/chat/completions, /v1/completions (SSE streaming), /v1/models, /health."""
    from infir.serve.config import ServerConfig
    from infir.serve.runner import run_server

    _check_model_dir("serve", model_dir)
    config = ServerConfig(model_name=model_name, max_batch_size=max_batch_size, max_queue=max_queue,
                          batch_window_ms=batch_window_ms, quantize=quantize)
    run_server(model_dir, host=host, port=port, config=config)


def chat_command(
    model_dir: Path = typer.Argument(..., help="Model folder to chat with."),
    system: str | None = typer.Option(None, "--system", help="System prompt."),
    max_tokens: int = typer.Option(256, "--max-tokens", help="Most tokens per reply."),
    temperature: float = typer.Option(0.7, "--temperature", help="0 = greedy."),
    top_p: float = typer.Option(0.95, "--top-p"),
    seed: int | None = typer.Option(None, "--seed", help="Seed for reproducible sampling."),
) -> None:
    """Interactive terminal chat with streaming output (/reset clears history, /exit or Ctrl-D quits)."""
    from infir.serve.chat import run_chat

    _check_model_dir("chat", model_dir)
    run_chat(model_dir, system=system, max_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=seed)


def export_command(
    model_dir: Path = typer.Argument(..., help="Model folder to export."),
    format: str = typer.Option(..., "--format", help="hf or gguf."),
    output: Path = typer.Option(..., "--output", "-o", help="Output folder (hf) or .gguf file (gguf)."),
    quant: str = typer.Option("f16", "--quant", help="GGUF tensor type: f32, f16 or q8_0."),
    dtype: str | None = typer.Option(None, "--dtype", help="HF weights dtype (float32, bfloat16, float16)."),
) -> None:
    """Export a model to a Hugging Face folder or a llama.cpp GGUF file."""
    if format not in ("hf", "gguf"):
        typer.echo(f"infir export: unknown format {format!r}: choose hf or gguf", err=True)
        raise typer.Exit(code=2)
    if format == "gguf" and quant not in ("f32", "f16", "q8_0"):
        typer.echo(f"infir export: unknown --quant {quant!r}: choose f32, f16 or q8_0", err=True)
        raise typer.Exit(code=2)
    from infir.serve.export import export_gguf, export_hf

    _check_model_dir("export", model_dir)
    if format == "hf":
        export_hf(model_dir, output, dtype=dtype)
    else:
        export_gguf(model_dir, output, quant=quant)
    typer.echo(str(output))
