"""A real OpenAI-compatible HTTP server on loopback for synthesis tests, answering with a real tiny model.

It stands in for a 70B teacher that cannot exist here: the model is a tiny random Llama (loaded with
transformers from an infir model folder), so its answers are gibberish, but every request goes through
real HTTP, the real chat template, real tokenisation and real sampling. It counts the requests it serves.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import uvicorn
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel


class ChatRequest(BaseModel):
    model: str
    messages: list[dict]
    temperature: float = 0.0
    max_tokens: int = 64
    seed: int | None = None


def build_app(model_dir: Path, model_name: str = "tiny-teacher", max_new_tokens: int = 16,
              delay_s: float = 0.0, fail_first: int = 0) -> FastAPI:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(1)  # tiny model: threads only add contention on small machines
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    lock = threading.Lock()
    app = FastAPI()
    app.state.requests = 0
    app.state.failures_left = fail_first
    app.state.delay_s = delay_s

    @app.get("/v1/models")
    def models() -> dict:
        return {"object": "list", "data": [{"id": model_name, "object": "model"}]}

    @app.post("/v1/chat/completions")
    def chat(request: ChatRequest) -> dict:
        with lock:
            app.state.requests += 1
            if app.state.failures_left > 0:  # transient overload, to exercise the client's retries
                app.state.failures_left -= 1
                raise HTTPException(status_code=503, detail="busy, retry")
        if request.model != model_name:
            raise HTTPException(status_code=404, detail=f"unknown model {request.model}")
        time.sleep(app.state.delay_s)
        inputs = tokenizer.apply_chat_template(request.messages, add_generation_prompt=True,
                                               return_tensors="pt", return_dict=True)
        sampling = {"do_sample": True, "temperature": request.temperature} if request.temperature > 0 else \
            {"do_sample": False}
        with lock, torch.no_grad():
            torch.manual_seed(request.seed or 0)
            out = model.generate(**inputs, max_new_tokens=min(request.max_tokens, max_new_tokens),
                                 pad_token_id=tokenizer.pad_token_id, **sampling)
        new = out[0, inputs["input_ids"].shape[1]:].tolist()
        text = tokenizer.decode(new, skip_special_tokens=True)
        finish = "stop" if new and new[-1] == tokenizer.eos_token_id else "length"
        return {"id": f"chatcmpl-{app.state.requests}", "object": "chat.completion", "model": model_name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "finish_reason": finish}],
                "usage": {"prompt_tokens": inputs["input_ids"].shape[1], "completion_tokens": len(new)}}

    return app


def build_infir_serve_app(model_dir: Path, model_name: str = "tiny-teacher", delay_s: float = 0.0,
                          fail_first: int = 0) -> FastAPI:
    """`infir serve`'s own app for the model folder, with a request counter (and optional 503s / delay)."""
    import asyncio

    from fastapi.responses import JSONResponse

    from infir.serve.config import ServerConfig
    from infir.serve.server import create_app

    app = create_app(model_dir, ServerConfig(model_name=model_name))
    app.state.requests = 0
    app.state.failures_left = fail_first
    app.state.delay_s = delay_s

    @app.middleware("http")
    async def count(request, call_next):
        if request.url.path.endswith("/chat/completions"):
            app.state.requests += 1
            if app.state.failures_left > 0:
                app.state.failures_left -= 1
                return JSONResponse({"error": {"message": "busy, retry"}}, status_code=503)
            await asyncio.sleep(app.state.delay_s)
        return await call_next(request)

    return app


class ServerThread:
    """uvicorn on 127.0.0.1 with a free port, in a daemon thread."""

    def __init__(self, app: FastAPI):
        self.app = app
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/v1"
        return self

    @property
    def requests(self) -> int:
        return self.app.state.requests

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
