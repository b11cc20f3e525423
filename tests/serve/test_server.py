"""The OpenAI-compatible server on a real loopback port, driven by the official `openai` client and httpx."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest

from infir.generation import SamplingParams
from infir.generation.engine import InfirGenerator
from infir.generation.text import render_chat
from infir.serve.config import ServerConfig
from infir.serve.runner import BackgroundServer

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def reference(tiny_model_dir):
    """The same model in process: what the server must reproduce."""
    return InfirGenerator.from_pretrained(tiny_model_dir, device="cpu", batch_size=1)


@pytest.fixture(scope="module")
def server(tiny_model_dir):
    config = ServerConfig(model_name="tiny", max_batch_size=8, batch_window_ms=100)
    with BackgroundServer(tiny_model_dir, config=config) as s:
        yield s


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0)


MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 12 plus 30?"}]


def test_models_and_health(client, server):
    assert [m.id for m in client.models.list().data] == ["tiny"]
    health = httpx.get(server.root + "/health").json()
    assert health["status"] == "ok" and health["model"] == "tiny"


def test_chat_matches_in_process_generation_streamed_or_not(client, reference):
    expected = reference.generate([render_chat(reference.tokenizer, MESSAGES)],
                                  SamplingParams(max_new_tokens=24, temperature=0.0))[0]
    response = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=24, temperature=0)
    choice = response.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == expected.text
    assert choice.finish_reason == expected.finish_reason
    assert response.usage.prompt_tokens == expected.prompt_tokens
    assert response.usage.completion_tokens == len(expected.token_ids)

    chunks = list(client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=24, temperature=0,
                                                 stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected.text
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1  # really streamed
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == \
        [expected.finish_reason]
    assert chunks[-1].usage.completion_tokens == len(expected.token_ids)


def test_completions_seed_and_token_id_prompts(client, reference):
    a = client.completions.create(model="tiny", prompt="The quick brown", max_tokens=12, temperature=1.0, seed=7)
    b = client.completions.create(model="tiny", prompt="The quick brown", max_tokens=12, temperature=1.0, seed=7)
    assert a.choices[0].text == b.choices[0].text
    expected = reference.generate(["The quick brown"], SamplingParams(max_new_tokens=12, temperature=1.0, seed=7))[0]
    assert a.choices[0].text == expected.text
    ids = reference.tokenizer.encode("Hello!", add_special_tokens=True)
    by_ids = client.completions.create(model="tiny", prompt=ids, max_tokens=8, temperature=0)
    by_text = client.completions.create(model="tiny", prompt="Hello!", max_tokens=8, temperature=0)
    assert by_ids.choices[0].text == by_text.choices[0].text
    assert by_ids.usage.completion_tokens == 8 and by_ids.choices[0].finish_reason == "length"


def test_stop_strings_cut_text_also_when_streaming(client):
    full = client.completions.create(model="tiny", prompt="What is", max_tokens=30, temperature=0).choices[0].text
    assert len(full) > 12
    stop = full[6:9]
    cut = full[: full.index(stop)]
    done = client.completions.create(model="tiny", prompt="What is", max_tokens=30, temperature=0, stop=[stop])
    assert done.choices[0].text == cut and done.choices[0].finish_reason == "stop"
    streamed = client.completions.create(model="tiny", prompt="What is", max_tokens=30, temperature=0,
                                         stop=stop, stream=True)
    assert "".join(c.choices[0].text for c in streamed if c.choices) == cut


def test_concurrent_requests_share_batches_and_keep_their_answers(client, server):
    prompts = ["Hello!", "def add(a, b):", "The lazy dog", "Small models", "What is 12", "How are you"]
    solo = [client.completions.create(model="tiny", prompt=p, max_tokens=10, temperature=0).choices[0].text
            for p in prompts]
    before = httpx.get(server.root + "/health").json()["batches_run"]
    barrier = threading.Barrier(len(prompts))

    def ask(prompt: str) -> str:
        barrier.wait()
        return client.completions.create(model="tiny", prompt=prompt, max_tokens=10, temperature=0).choices[0].text

    with ThreadPoolExecutor(len(prompts)) as pool:
        together = list(pool.map(ask, prompts))
    health = httpx.get(server.root + "/health").json()
    assert together == solo
    assert health["largest_batch"] > 1 and health["batches_run"] - before < len(prompts)


@pytest.mark.parametrize("body, status, param", [
    (b'{"model": "tiny", "prompt": "x"', 400, None),  # malformed JSON
    (b'{"model": "gpt-4", "prompt": "x"}', 404, "model"),
    (b'{"model": "tiny", "prompt": "x", "max_tokens": -5}', 400, "max_tokens"),
    (b'{"model": "tiny", "prompt": "' + b"fox " * 1500 + b'"}', 400, "prompt"),
    (b'{"model": "tiny", "prompt": "x", "max_tokens": 5000}', 400, "prompt"),
    (b'{"model": "tiny", "prompt": "x", "temperature": 9}', 400, "temperature"),
    (b'{"model": "tiny", "prompt": [1, 99999]}', 400, "prompt"),
    (b'{"model": "tiny"}', 400, "prompt"),
    (b'[1, 2]', 400, None),
])
def test_bad_requests_get_openai_errors_and_server_keeps_serving(server, client, body, status, param):
    response = httpx.post(server.url + "/completions", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"] and error["type"] and error["param"] == param
    ok = client.completions.create(model="tiny", prompt="still there?", max_tokens=2, temperature=0)
    assert ok.choices[0].finish_reason in ("stop", "length")


def test_openai_client_raises_typed_errors(client):
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=MESSAGES)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "a " * 2000}])
    assert info.value.code == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="tiny", messages=[])


def test_full_queue_answers_429_then_recovers(tiny_model_dir):
    config = ServerConfig(model_name="tiny", max_batch_size=1, max_queue=1, batch_window_ms=0)
    with BackgroundServer(tiny_model_dir, config=config) as s:
        # a prompt the random model answers at full length (no end token within 400): requests overlap
        gen, long = s.app.state.serving.generator, SamplingParams(max_new_tokens=400)
        prompt = next(p for p in ("Hello", "The quick brown fox", "What is 12 plus 30?", "def add(a, b):")
                      if gen.generate([p], long)[0].finish_reason == "length")
        body = {"model": "tiny", "prompt": prompt, "max_tokens": 400, "temperature": 0}
        barrier = threading.Barrier(5)

        def post(_: int) -> int:
            barrier.wait()
            return httpx.post(s.url + "/completions", json=body, timeout=60).status_code

        with ThreadPoolExecutor(5) as pool:
            codes = list(pool.map(post, range(5)))
        assert 200 in codes and 429 in codes and set(codes) <= {200, 429}
        again = httpx.post(s.url + "/completions", json={**body, "max_tokens": 2}, timeout=60)
        assert again.status_code == 200


def test_infir_serve_cli_listens_and_answers(tiny_model_dir):
    proc = subprocess.Popen([sys.executable, "-m", "infir.cli", "serve", str(tiny_model_dir), "--port", "0",
                             "--model-name", "cli-tiny"], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline()
        assert "listening on" in line, line
        url = line.split("listening on ")[1].split()[0]
        response = httpx.post(url + "/chat/completions", timeout=60,
                              json={"model": "cli-tiny", "messages": MESSAGES, "max_tokens": 4, "temperature": 0})
        assert response.status_code == 200
        assert json.loads(response.text)["choices"][0]["message"]["role"] == "assistant"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_client_that_hangs_up_mid_stream_does_not_break_the_server(server, client):
    body = {"model": "tiny", "prompt": "Hello", "max_tokens": 200, "temperature": 0, "stream": True}
    with httpx.stream("POST", server.url + "/completions", json=body, timeout=60) as response:
        assert response.status_code == 200
        first = next(response.iter_lines())
        assert first.startswith("data: ")
    two = client.completions.create(model="tiny", prompt="Hello", max_tokens=5, temperature=1.0, n=2, seed=3)
    assert sorted(c.index for c in two.choices) == [0, 1]
    assert 0 < two.usage.completion_tokens <= 10
    assert two.choices[0].text != two.choices[1].text  # seed + choice index: n samples, not n copies


def test_quantized_serving(tiny_model_dir):
    config = ServerConfig(model_name="tiny-int8", quantize="int8")
    with BackgroundServer(tiny_model_dir, config=config) as s:
        client = openai.OpenAI(base_url=s.url, api_key="unused", max_retries=0)
        response = client.chat.completions.create(model="tiny-int8", messages=MESSAGES, max_tokens=6, temperature=0)
        assert response.choices[0].finish_reason in ("stop", "length") and response.usage.prompt_tokens > 0
        model = s.app.state.serving.generator.model
        assert type(model.lm_head).__name__ == "Int8WeightOnlyLinear"


def test_echo_logprobs_let_the_eval_client_score_text_like_in_process(server, reference):
    from infir.generation.http import OpenAIGenerator

    requests = [("The quick brown", " fox jumps"), ("What is 12 plus 30?", " The answer is 42.")]
    remote = OpenAIGenerator(server.url, model="tiny").loglikelihood(requests)
    local = reference.loglikelihood(requests)
    for (r_sum, r_n), (l_sum, l_n) in zip(remote, local, strict=True):
        assert r_n == l_n and r_sum == pytest.approx(l_sum, abs=1e-3)
    body = {"model": "tiny", "prompt": "Hello!", "max_tokens": 3, "temperature": 0, "logprobs": 2}
    choice = httpx.post(server.url + "/completions", json=body, timeout=60).json()["choices"][0]
    assert len(choice["logprobs"]["tokens"]) == len(choice["token_ids"]) == 3
    assert all(len(top) == 2 for top in choice["logprobs"]["top_logprobs"])
    assert choice["logprobs"]["text_offset"][0] == len("Hello!")
