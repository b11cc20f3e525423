"""An OpenAI-compatible HTTP server over infir's Generation API (FastAPI + uvicorn).

Endpoints: POST /v1/chat/completions, POST /v1/completions (both stream by server-sent events with
`"stream": true`), GET /v1/models, GET /health. Concurrent requests are decoded together by the
`Batcher`; every client error gets a 4xx JSON body in OpenAI's `{"error": {...}}` shape.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from infir.generation import Completion, SamplingParams
from infir.generation.text import encode_prompt, render_chat
from infir.serve.batcher import Batcher, BatcherStopped, Job, QueueFull
from infir.serve.config import ServerConfig
from infir.serve.logprobs import completion_logprobs
from infir.serve.protocol import (
    APIError,
    ChatCompletionRequest,
    CompletionRequest,
    SamplingFields,
    validation_message,
)
from infir.utils.log import get_logger

log = get_logger(__name__)


def load_serving_generator(model_dir: str | Path, config: ServerConfig) -> Any:
    """An in-process generator for a model folder, optionally weight-only quantized (CPU)."""
    from infir.generation.engine import InfirGenerator

    generator = InfirGenerator.from_pretrained(model_dir, device="cpu",
                                               batch_size=config.max_batch_size * config.max_n)
    if config.quantize:
        from infir.serve.quantize import quantize_model

        quantize_model(generator.model, config.quantize)
    return generator


class ServingState:
    """What the request handlers share: generator, tokenizer, limits and the batcher."""

    def __init__(self, generator: Any, config: ServerConfig, model_name: str) -> None:
        self.generator = generator
        self.tokenizer = generator.tokenizer
        self.config = config
        self.model_name = model_name
        self.max_context = int(getattr(generator, "max_context", None) or self.tokenizer.model_max_length)
        self.batcher = Batcher(generator, config.max_batch_size, config.max_queue, config.batch_window_ms)
        self.created = int(time.time())

    def check_model(self, name: str) -> None:
        if name != self.model_name:
            raise APIError(404, f"The model '{name}' does not exist; this server serves '{self.model_name}'.",
                           param="model", code="model_not_found")

    def sampling(self, body: SamplingFields, prompt_ids: list[int], default_max: int) -> SamplingParams:
        """Validate limits against the context and turn the request fields into SamplingParams."""
        room = self.max_context - len(prompt_ids)
        asked = body.requested_max_tokens()
        if room <= 0 or (asked is not None and asked > room):
            raise APIError(400, f"This model's maximum context length is {self.max_context} tokens. However, "
                                f"you requested {len(prompt_ids) + (asked or 0)} tokens ({len(prompt_ids)} in "
                                f"the prompt, {asked or 0} for the completion).",
                           param="messages" if isinstance(body, ChatCompletionRequest) else "prompt",
                           code="context_length_exceeded")
        max_new = asked if asked is not None else min(default_max, room)
        return SamplingParams(max_new_tokens=max_new, temperature=body.temperature, top_p=body.top_p,
                              stop=list(body.stop or []), seed=body.seed)

    def common_checks(self, body: SamplingFields) -> None:
        self.check_model(body.model)
        if body.n > self.config.max_n:
            raise APIError(400, f"n must be at most {self.config.max_n}", param="n")


def _for_choices(params: SamplingParams, n: int) -> list[SamplingParams]:
    """One SamplingParams per choice; with a seed, choice i uses seed + i so the n choices differ."""
    if params.seed is None:
        return [params] * n
    return [replace(params, seed=params.seed + i) for i in range(n)]


def _usage(prompt_tokens: int, completions: list[Completion]) -> dict[str, int]:
    completion_tokens = sum(len(c.token_ids) for c in completions)
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


class StopHoldback:
    """Streams text pieces while holding back what could still become a stop string.

    A piece may hold a whole stop string and more: text from the first stop on is never sent.
    """

    def __init__(self, stops: list[str]) -> None:
        self.stops = [s for s in stops if s]
        self.hold = max((len(s) for s in self.stops), default=1) - 1
        self.text = ""
        self.sent = 0
        self.stopped = False

    def push(self, piece: str) -> str:
        if self.stopped:
            return ""
        self.text += piece
        start = max(0, self.sent - self.hold)
        hits = [i for i in (self.text.find(s, start) for s in self.stops) if i >= 0]
        end = min(hits) if hits else len(self.text) - self.hold
        self.stopped = bool(hits)
        if end <= self.sent:
            return ""
        out, self.sent = self.text[self.sent : end], end
        return out

    def finish(self, final_text: str) -> str:
        """The rest of the final (stop-trimmed) text not yet sent."""
        sent = self.text[: self.sent]
        return final_text[len(sent):] if final_text.startswith(sent) else ""


async def _events(job: Job) -> AsyncIterator[tuple]:
    while True:
        event = await job.events.get()
        yield event
        if event[0] in ("done", "error"):
            return


def _sse(data: Any) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


def create_app(model_dir_or_generator: str | Path | Any, config: ServerConfig | None = None,
               model_name: str | None = None) -> FastAPI:
    """The FastAPI app for a model folder or a ready Generator (which must carry `.tokenizer`)."""
    config = config or ServerConfig()
    if isinstance(model_dir_or_generator, (str, Path)):
        path = Path(model_dir_or_generator)
        generator = load_serving_generator(path, config)
        default_name = path.resolve().name
    else:
        generator, default_name = model_dir_or_generator, "infir-model"
    state = ServingState(generator, config, model_name or config.model_name or default_name)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state.batcher.start()
        log.info("serving model '%s' (context %d, batch %d, queue %d)", state.model_name, state.max_context,
                 config.max_batch_size, config.max_queue)
        yield
        state.batcher.stop()

    app = FastAPI(title="infir", lifespan=lifespan)
    app.state.serving = state

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = validation_message(list(exc.errors()))
        return APIError(400, message, param=param).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return APIError(exc.status_code, str(exc.detail), type_="invalid_request_error").response()

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return APIError(500, f"internal error: {type(exc).__name__}", type_="server_error").response()

    @app.get("/health")
    async def health() -> JSONResponse:
        ok = state.batcher.alive
        body = {"status": "ok" if ok else "unavailable", "model": state.model_name,
                "waiting": state.batcher.waiting.qsize(), "busy": state.batcher.busy,
                "batches_run": state.batcher.batches_run, "largest_batch": state.batcher.largest_batch}
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": state.model_name, "object": "model",
                                            "created": state.created, "owned_by": "infir"}]}

    async def submit(prompts: list[list[int]], params: list[SamplingParams]) -> Job:
        job = Job(prompts, params, asyncio.get_running_loop())
        try:
            state.batcher.submit(job)
        except QueueFull as e:
            raise APIError(429, f"server is busy: {e}; retry later", type_="rate_limit_error",
                           code="queue_full") from e
        except BatcherStopped as e:
            raise APIError(503, str(e), type_="server_error", code="unavailable") from e
        return job

    async def collect(job: Job) -> list[Completion]:
        async for event in _events(job):
            if event[0] == "done":
                return event[1]
            if event[0] == "error":
                raise APIError(500, event[1], type_="server_error")
        raise APIError(500, "generation ended without a result", type_="server_error")

    def stream(job: Job, chat: bool, ident: str, prompt_tokens: int, include_usage: bool) -> StreamingResponse:
        obj = "chat.completion.chunk" if chat else "text_completion"
        holdbacks = [StopHoldback(p.stop) for p in job.params]

        def chunk(choices: list[dict[str, Any]], **extra: Any) -> str:
            return _sse({"id": ident, "object": obj, "created": int(time.time()), "model": state.model_name,
                         "choices": choices, **extra})

        def choice(index: int, text: str | None, finish: str | None) -> dict[str, Any]:
            if chat:
                delta = {"content": text} if text is not None else {}
                return {"index": index, "delta": delta, "finish_reason": finish}
            return {"index": index, "text": text or "", "logprobs": None, "finish_reason": finish}

        async def body() -> AsyncIterator[str]:
            if chat:
                yield chunk([{"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
                             for i in range(len(job.prompts))])
            async for event in _events(job):
                if event[0] == "token":
                    text = holdbacks[event[1]].push(event[2])
                    if text:
                        yield chunk([choice(event[1], text, None)])
                elif event[0] == "error":
                    yield _sse({"error": {"message": event[1], "type": "server_error", "param": None, "code": None}})
                else:
                    completions: list[Completion] = event[1]
                    for i, c in enumerate(completions):
                        rest = holdbacks[i].finish(c.text)
                        if rest:
                            yield chunk([choice(i, rest, None)])
                        yield chunk([choice(i, None, c.finish_reason)])
                    if include_usage:
                        yield chunk([], usage=_usage(prompt_tokens, completions))
            yield "data: [DONE]\n\n"

        return StreamingResponse(body(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.post("/v1/chat/completions")
    async def chat_completions(req: ChatCompletionRequest) -> Any:
        state.common_checks(req)
        if req.logprobs:
            raise APIError(400, "logprobs are not supported on /v1/chat/completions (use /v1/completions)",
                           param="logprobs")
        messages = [{"role": m.role, "content": m.text()} for m in req.messages]
        try:
            prompt_ids = encode_prompt(state.tokenizer, render_chat(state.tokenizer, messages))
        except Exception as e:
            raise APIError(400, f"cannot apply the chat template: {e}", param="messages") from e
        params = state.sampling(req, prompt_ids, state.config.default_max_tokens)
        job = await submit([prompt_ids] * req.n, _for_choices(params, req.n))
        ident = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        if req.stream:
            return stream(job, True, ident, len(prompt_ids), include_usage)
        completions = await collect(job)
        choices = [{"index": i, "message": {"role": "assistant", "content": c.text},
                    "finish_reason": c.finish_reason, "logprobs": None, "token_ids": c.token_ids}
                   for i, c in enumerate(completions)]
        return {"id": ident, "object": "chat.completion", "created": int(time.time()), "model": state.model_name,
                "choices": choices, "usage": _usage(len(prompt_ids), completions)}

    async def add_logprobs(choice: dict[str, Any], prompt: str | list[int], ids: list[int], c: Completion,
                           req: CompletionRequest) -> None:
        """Fill `logprobs` (and echo the prompt) for one choice; the forward pass runs off the event loop."""
        tok = state.tokenizer
        added_bos = isinstance(prompt, str) and ids[:1] == [tok.bos_token_id] and not prompt.startswith(
            tok.bos_token or "\0")
        if req.logprobs is not None:
            choice["logprobs"] = await asyncio.to_thread(
                completion_logprobs, state.generator.model, tok, ids, c.token_ids, req.echo, req.logprobs, added_bos)
        if req.echo:
            prompt_text = prompt if isinstance(prompt, str) else tok.decode(ids, skip_special_tokens=False)
            choice["text"] = prompt_text + c.text

    @app.post("/v1/completions")
    async def completions(req: CompletionRequest) -> Any:
        state.common_checks(req)
        scoring = req.echo or req.logprobs is not None
        if scoring and req.stream:
            raise APIError(400, "echo/logprobs are not supported with stream=true", param="stream")
        if scoring and not hasattr(state.generator, "model"):
            raise APIError(400, "this server's engine cannot return logprobs", param="logprobs")
        prompts = req.prompts()
        prompt_ids = [encode_prompt(state.tokenizer, p) for p in prompts]
        vocab = state.generator.model.config.vocab_size if hasattr(state.generator, "model") else None
        for ids in prompt_ids:
            if vocab is not None and any(t < 0 or t >= vocab for t in ids):
                raise APIError(400, f"prompt token ids must be in [0, {vocab})", param="prompt")
        params = [state.sampling(req, ids, 16) for ids in prompt_ids]
        seqs = [ids for ids in prompt_ids for _ in range(req.n)]
        job = await submit(seqs, [c for p in params for c in _for_choices(p, req.n)])
        ident = f"cmpl-{uuid.uuid4().hex[:24]}"
        prompt_tokens = sum(len(ids) for ids in prompt_ids)
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        if req.stream:
            return stream(job, False, ident, prompt_tokens, include_usage)
        done = await collect(job)
        choices = [{"index": i, "text": c.text, "finish_reason": c.finish_reason, "logprobs": None,
                    "token_ids": c.token_ids} for i, c in enumerate(done)]
        if scoring:
            for i, c in enumerate(done):
                await add_logprobs(choices[i], prompts[i // req.n], prompt_ids[i // req.n], c, req)
        return {"id": ident, "object": "text_completion", "created": int(time.time()), "model": state.model_name,
                "choices": choices, "usage": _usage(prompt_tokens, done)}

    return app
