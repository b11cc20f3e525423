"""Exported GGUF files in stock llama.cpp (its llama-server): the same greedy tokens as infir, Llama and Qwen2.

Needs a llama.cpp build (../shared/tools/build-llamacpp.sh, about 20 minutes on 2 cores): point INFIR_LLAMA_CPP_BIN
at its bin/ folder, or leave the binaries in the script's default /tmp/llamacpp/bin. Skipped otherwise (not CI).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

BIN = Path(os.environ.get("INFIR_LLAMA_CPP_BIN", "/tmp/llamacpp/bin"))
pytestmark = pytest.mark.skipif(not (BIN / "llama-server").exists(), reason=f"no llama.cpp build in {BIN}")
PROMPTS = ["Question: what is 2", "def add(a", "The quick brown fox jumps over the lazy dog. A B C", "Hello"]


def _builder(arch: str):
    """tests/serve's tiny Llama (Llama 3 RoPE scaling: llama.cpp's rope_freqs) or the tiny HF Qwen2 of test_qwen2."""
    import importlib.util

    here = Path(__file__).resolve().parent
    path = here.parent / "serve" / "conftest.py" if arch == "llama" else here / "test_qwen2.py"
    spec = importlib.util.spec_from_file_location(f"_gguf_check_{arch}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_tiny_model if arch == "llama" else module.build_hf_qwen2


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_llama_server_greedy_tokens_equal_infir(arch, tmp_path) -> None:
    import httpx

    from infir.generation import SamplingParams
    from infir.generation.engine import InfirGenerator
    from infir.serve.export import export_gguf

    folder = _builder(arch)(tmp_path / arch)
    gguf_file = export_gguf(folder, tmp_path / f"{arch}.gguf", quant="f32")
    gen = InfirGenerator.from_pretrained(folder, device="cpu")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([str(BIN / "llama-server"), "-m", str(gguf_file), "--host", "127.0.0.1", "--port",
                             str(port), "-t", "1", "-c", "512", "-np", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        for prompt in PROMPTS:
            ids = gen.tokenizer.encode(prompt)
            ours = gen.generate([ids], SamplingParams(max_new_tokens=12))[0]
            body = {"prompt": ids, "n_predict": 12, "temperature": 0, "top_k": 1, "return_tokens": True,
                    "cache_prompt": False}
            theirs = httpx.post(url + "/completion", json=body, timeout=60).json()["tokens"]
            # llama.cpp returns the end-of-generation token it stopped at; infir leaves EOS out
            assert theirs[: len(ours.token_ids)] == ours.token_ids
            assert len(theirs) == len(ours.token_ids) + (ours.finish_reason == "stop")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
