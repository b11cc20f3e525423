"""The OpenAI-compatible backend against a real server on loopback (`infir serve`'s app, our tiny model)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from infir.generation import SamplingParams, load_generator
from infir.generation.http import OpenAIGenerator

PROMPTS = ["Question: what is 2", "def add(a", "Natalia"]


@pytest.fixture(scope="module")
def served(tiny_model_dir) -> Iterator[tuple[str, object]]:
    uvicorn = pytest.importorskip("uvicorn")
    from infir.serve.server import create_app

    local = load_generator(tiny_model_dir)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(tiny_model_dir), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 60
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    assert server.started, "server did not start"
    yield f"http://127.0.0.1:{port}", local
    server.should_exit = True
    thread.join(timeout=10)


def test_remote_equals_local_greedy(served) -> None:
    url, local = served
    remote = load_generator(url)
    assert isinstance(remote, OpenAIGenerator)
    params = SamplingParams(max_new_tokens=8)
    ours, theirs = local.generate(PROMPTS, params), remote.generate(PROMPTS, params)
    assert [c.text for c in theirs] == [c.text for c in ours]
    assert all(c.prompt_tokens == o.prompt_tokens for c, o in zip(theirs, ours, strict=True))


def test_remote_streaming_and_chat(served) -> None:
    url, local = served
    remote = OpenAIGenerator(url + "/v1")
    pieces: dict[int, list[str]] = {}
    out = remote.generate(
        PROMPTS,
        SamplingParams(max_new_tokens=6),
        on_token=lambda i, _t, p: pieces.setdefault(i, []).append(p),
    )
    assert ["".join(pieces.get(i, [])) for i in range(len(PROMPTS))] == [c.text for c in out]
    chat = [[{"role": "user", "content": "hi"}]]
    assert (
        remote.generate_chat(chat, SamplingParams(max_new_tokens=5))[0].text
        == local.generate_chat(chat, SamplingParams(max_new_tokens=5))[0].text
    )
