"""`infir chat`: an interactive terminal chat that streams the reply token by token."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from infir.utils.log import get_logger

log = get_logger(__name__)

HELP = "Type a message and press Enter. /reset clears the conversation, /exit (or Ctrl-D) quits."


def fit_history(tokenizer, messages: list[dict[str, str]], max_prompt_tokens: int) -> list[dict[str, str]]:
    """Drop the oldest user/assistant turns (keeping a system prompt) until the rendering fits."""
    from infir.generation.text import encode_prompt, render_chat

    kept = list(messages)
    while True:
        n = len(encode_prompt(tokenizer, render_chat(tokenizer, kept)))
        first_turn = 1 if kept and kept[0]["role"] == "system" else 0
        if n <= max_prompt_tokens or len(kept) - first_turn <= 1:
            return kept
        del kept[first_turn]


def run_chat(model_dir: str | Path, system: str | None = None, max_tokens: int = 256, temperature: float = 0.7,
             top_p: float = 0.95, seed: int | None = None, stdin: TextIO | None = None,
             stdout: TextIO | None = None) -> None:
    from infir.generation import SamplingParams
    from infir.generation.engine import InfirGenerator
    from infir.generation.text import render_chat

    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    generator = InfirGenerator.from_pretrained(model_dir, device="cpu", batch_size=1)
    tokenizer = generator.tokenizer
    max_prompt = max(1, generator.max_context - max_tokens)
    system_turn = [{"role": "system", "content": system}] if system else []
    messages = list(system_turn)
    interactive = stdin.isatty()
    stdout.write(f"infir chat with {Path(model_dir).resolve().name}. {HELP}\n")
    turn = 0
    while True:
        if interactive:
            stdout.write("\nyou> ")
        stdout.flush()
        line = stdin.readline()
        if not line:
            stdout.write("\n")
            break
        text = line.rstrip("\n")
        if text.strip() in ("/exit", "/quit"):
            break
        if text.strip() == "/reset":
            messages = list(system_turn)
            stdout.write("(conversation cleared)\n")
            continue
        if not text.strip():
            continue
        messages.append({"role": "user", "content": text})
        messages = fit_history(tokenizer, messages, max_prompt)
        params = SamplingParams(max_new_tokens=max_tokens, temperature=temperature, top_p=top_p,
                                seed=None if seed is None else seed + turn)
        stdout.write("assistant> ")
        stdout.flush()

        shown: list[str] = []

        def show(index: int, token_id: int, piece: str, shown: list[str] = shown) -> None:
            shown.append(piece)
            stdout.write(piece)
            stdout.flush()

        completion = generator.generate([render_chat(tokenizer, messages)], params, on_token=show)[0]
        streamed = "".join(shown)
        if completion.text.startswith(streamed):  # bytes held back as incomplete UTF-8 at the very end
            stdout.write(completion.text[len(streamed):])
        stdout.write("\n" if completion.finish_reason == "stop" else " [length limit]\n")
        stdout.flush()
        messages.append({"role": "assistant", "content": completion.text})
        turn += 1
