"""`infir chat` driven through stdin in a real subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from infir.generation import SamplingParams
from infir.generation.engine import InfirGenerator
from infir.generation.text import render_chat
from infir.serve.chat import fit_history

REPO = Path(__file__).resolve().parents[2]


def test_chat_streams_replies_keeps_history_and_resets(tiny_model_dir):
    stdin = "Hello!\nAnd now?\n/reset\nAnd now?\n"
    done = subprocess.run([sys.executable, "-m", "infir.cli", "chat", str(tiny_model_dir), "--temperature", "0",
                           "--max-tokens", "12", "--system", "Be brief."],
                          input=stdin, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    # split on "\n" only: a random model's text may hold characters str.splitlines() treats as breaks
    replies = [line.split("assistant> ", 1)[1] for line in done.stdout.split("\n") if "assistant> " in line]
    assert len(replies) == 3

    gen = InfirGenerator.from_pretrained(tiny_model_dir, device="cpu", batch_size=1)
    params = SamplingParams(max_new_tokens=12, temperature=0.0)
    system = {"role": "system", "content": "Be brief."}
    first = gen.generate([render_chat(gen.tokenizer, [system, {"role": "user", "content": "Hello!"}])], params)[0]
    history = [system, {"role": "user", "content": "Hello!"}, {"role": "assistant", "content": first.text},
               {"role": "user", "content": "And now?"}]
    second = gen.generate([render_chat(gen.tokenizer, history)], params)[0]
    fresh = gen.generate([render_chat(gen.tokenizer, [system, {"role": "user", "content": "And now?"}])], params)[0]

    def shown(c) -> str:
        return c.text + ("" if c.finish_reason == "stop" else " [length limit]")

    assert replies[0] == shown(first).split("\n")[0]
    assert replies[1] == shown(second).split("\n")[0]  # the second turn saw the first one
    assert replies[2] == shown(fresh).split("\n")[0]  # /reset forgot it
    assert "(conversation cleared)" in done.stdout


def test_fit_history_drops_oldest_turns_but_keeps_system(tiny_model_dir):
    gen = InfirGenerator.from_pretrained(tiny_model_dir, device="cpu", batch_size=1)
    messages = [{"role": "system", "content": "S"}] + [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i} " * 20} for i in range(9)
    ]
    kept = fit_history(gen.tokenizer, messages, 200)
    assert kept[0]["role"] == "system" and kept[-1] == messages[-1] and len(kept) < len(messages)
