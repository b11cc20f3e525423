"""The teacher: an OpenAI-compatible chat endpoint or a local model folder, behind an on-disk cache.

`open_teacher(spec, cfg, cache_path)` gives an object with `await complete(messages, temperature=...,
max_tokens=..., seed=...) -> str`. Requests are keyed by a hash of (model, messages, params); an answer
already in the cache costs nothing, so rerunning a pipeline (or resuming a killed one) only asks the
teacher for what it has not answered yet.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import random
import threading
from pathlib import Path
from typing import Any

from infir.synth.config import TeacherConfig
from infir.utils.log import get_logger

log = get_logger(__name__)
logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request drowns the progress

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class TeacherError(RuntimeError):
    """The teacher could not answer (after retries)."""


class RequestCache:
    """Append-only JSONL cache {key, response}; a torn last line (crash mid-write) is ignored."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._data: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.torn_lines = 0
        if self.path.exists():
            with open(self.path, "rb") as f:
                raw = f.read()
            good_end = raw.rfind(b"\n") + 1
            for line in raw[:good_end].splitlines():
                try:
                    row = json.loads(line)
                    self._data[row["key"]] = row["response"]
                except (json.JSONDecodeError, KeyError):
                    self.torn_lines += 1
            if good_end < len(raw):  # a half-written line from a crash: cut it off
                self.torn_lines += 1
                with open(self.path, "r+b") as f:
                    f.truncate(good_end)
        self._file = open(self.path, "a", encoding="utf-8")

    @staticmethod
    def key(payload: dict) -> str:
        return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()

    def get(self, key: str) -> Any | None:
        return self._data.get(key)

    def put(self, key: str, response: Any) -> None:
        with self._lock:
            self._data[key] = response
            self._file.write(json.dumps({"key": key, "response": response}, ensure_ascii=False) + "\n")
            self._file.flush()

    def __len__(self) -> int:
        return len(self._data)

    def close(self) -> None:
        self._file.close()


class _Teacher:
    """Shared part: caching, counters, bounded concurrency. Subclasses implement `_request`."""

    name: str

    def __init__(self, cfg: TeacherConfig, cache: RequestCache | None):
        self.cfg = cfg
        self.cache = cache
        self.stats = {"requests": 0, "cache_hits": 0, "retries": 0, "failures": 0}
        self._semaphore = asyncio.Semaphore(cfg.concurrency)

    async def complete(self, messages: list[dict], *, temperature: float = 0.0, max_tokens: int = 512,
                       seed: int | None = None) -> str:
        params = {"temperature": temperature, "max_tokens": max_tokens, "seed": seed}
        key = RequestCache.key({"model": self.name, "messages": messages, "params": params})
        if self.cache is not None and (hit := self.cache.get(key)) is not None:
            self.stats["cache_hits"] += 1
            return hit
        async with self._semaphore:
            self.stats["requests"] += 1
            text = await self._request(messages, params)
        if self.cache is not None:
            self.cache.put(key, text)
        return text

    async def _request(self, messages: list[dict], params: dict) -> str:
        raise NotImplementedError

    async def aclose(self) -> None:
        if self.cache is not None:
            self.cache.close()


class OpenAITeacher(_Teacher):
    """Any OpenAI-compatible /v1/chat/completions endpoint (vLLM, llama.cpp, hosted APIs, `infir serve`)."""

    def __init__(self, url: str, cfg: TeacherConfig, cache: RequestCache | None):
        import httpx

        super().__init__(cfg, cache)
        url = url.rstrip("/")
        self.base_url = url if url.endswith("/v1") else url + "/v1"
        headers = {}
        if key := os.environ.get(cfg.api_key_env):
            headers["Authorization"] = f"Bearer {key}"
        limits = httpx.Limits(max_connections=cfg.concurrency, max_keepalive_connections=cfg.concurrency)
        self._client = httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(cfg.request_timeout_s),
                                         limits=limits, trust_env=not is_loopback(url))
        self.name = cfg.model or ""

    async def resolve_model(self) -> None:
        """Ask the endpoint for its first model when the config names none."""
        if self.name:
            return
        data = await self._with_retries("GET", f"{self.base_url}/models", None)
        models = data.get("data") or []
        if not models:
            raise TeacherError(f"{self.base_url}/models lists no model; set teacher.model in the config")
        self.name = models[0]["id"]
        log.info("teacher model: %s at %s", self.name, self.base_url)

    async def _with_retries(self, method: str, url: str, body: dict | None) -> dict:
        import httpx

        last: str = ""
        for attempt in range(self.cfg.max_retries + 1):
            if attempt:
                self.stats["retries"] += 1
                delay = self.cfg.backoff_s * 2 ** (attempt - 1)
                await asyncio.sleep(delay * (1 + 0.25 * random.random()))
            try:
                response = await self._client.request(method, url, json=body)
            except (httpx.TransportError, httpx.TimeoutException) as e:
                last = f"{type(e).__name__}: {e}"
                continue
            if response.status_code in RETRY_STATUS:
                last = f"HTTP {response.status_code}: {response.text[:200]}"
                continue
            if response.status_code >= 400:
                self.stats["failures"] += 1
                raise TeacherError(f"{url}: HTTP {response.status_code}: {response.text[:300]}")
            return response.json()
        self.stats["failures"] += 1
        raise TeacherError(f"{url}: gave up after {self.cfg.max_retries + 1} attempts ({last})")

    async def _request(self, messages: list[dict], params: dict) -> str:
        body = {"model": self.name, "messages": messages, "temperature": params["temperature"],
                "max_tokens": params["max_tokens"]}
        if params["seed"] is not None:
            body["seed"] = params["seed"]
        data = await self._with_retries("POST", f"{self.base_url}/chat/completions", body)
        try:
            content = data["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as e:
            raise TeacherError(f"malformed chat completion: {json.dumps(data)[:300]}") from e
        return content or ""

    async def aclose(self) -> None:
        await self._client.aclose()
        await super().aclose()


class LocalTeacher(_Teacher):
    """A local infir/HF model folder through the eval room's `load_generator`.

    Concurrent requests are gathered into batches (up to `teacher.concurrency`) and decoded together.
    """

    def __init__(self, path: Path, cfg: TeacherConfig, cache: RequestCache | None):
        from infir.generation import load_generator  # the eval helper's generation API

        super().__init__(cfg, cache)
        self.name = cfg.model or str(Path(path).resolve())
        self._generator = load_generator(str(path))
        self._pending: list[tuple[list[dict], Any, asyncio.Future]] = []
        self._worker: asyncio.Task | None = None
        self.stats["batches"] = 0

    def _generate(self, batch: list[tuple[list[dict], Any, asyncio.Future]]) -> list[str]:
        conversations, params = [m for m, _, _ in batch], [p for _, p, _ in batch]
        if hasattr(self._generator, "generate_chat"):
            return [c.text for c in self._generator.generate_chat(conversations, params)]
        from infir.model.chat_template import render_chat

        prompts = [render_chat(m, add_generation_prompt=True) for m in conversations]
        return [c.text for c in self._generator.generate(prompts, params)]

    async def _drain(self) -> None:
        await asyncio.sleep(0.005)  # let the other requests of this round arrive
        while self._pending:
            batch, self._pending = self._pending[:self.cfg.concurrency], self._pending[self.cfg.concurrency:]
            self.stats["batches"] += 1
            try:
                texts = await asyncio.to_thread(self._generate, batch)
            except Exception as e:  # noqa: BLE001 - every waiting request learns of the failure
                for _, _, future in batch:
                    future.set_exception(TeacherError(f"local generation failed: {e}"))
                continue
            for (_, _, future), text in zip(batch, texts, strict=True):
                future.set_result(text)

    async def _request(self, messages: list[dict], params: dict) -> str:
        from infir.generation import SamplingParams

        sampling = SamplingParams(max_new_tokens=params["max_tokens"], temperature=params["temperature"],
                                  seed=params["seed"])
        future = asyncio.get_running_loop().create_future()
        self._pending.append((messages, sampling, future))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain())
        return await future


async def open_teacher(spec: str, cfg: TeacherConfig, cache_path: Path | None) -> _Teacher:
    """An OpenAI-compatible URL (http[s]://...) or a local model folder."""
    cache = RequestCache(cache_path) if (cfg.cache and cache_path is not None) else None
    if spec.startswith(("http://", "https://")):
        teacher = OpenAITeacher(spec, cfg, cache)
        await teacher.resolve_model()
        return teacher
    path = Path(spec)
    if not path.is_dir():
        raise TeacherError(f"teacher {spec!r} is neither an http(s) URL nor a model folder")
    return LocalTeacher(path, cfg, cache)


def is_loopback(url: str) -> bool:
    """A server on this machine: reached directly, never through an HTTP(S)_PROXY from the environment."""
    from urllib.parse import urlparse

    return urlparse(url).hostname in ("127.0.0.1", "localhost", "::1")


def probe(url: str, timeout_s: float = 5.0) -> str | None:
    """None when an OpenAI-compatible URL answers at all (any HTTP status), else why not (refused, timed out).

    Run before expensive work so that a teacher nobody started is reported at once, not after hours of training.
    """
    import httpx

    base = url.rstrip("/")
    base = base if base.endswith("/v1") else base + "/v1"
    try:
        httpx.get(f"{base}/models", timeout=timeout_s, trust_env=not is_loopback(url))
    except httpx.ConnectError as e:
        return f"{url} refuses connections ({e})"
    except httpx.TimeoutException:
        return f"{url} did not answer within {timeout_s:.0f} s"
    except httpx.HTTPError as e:
        return f"{url}: {type(e).__name__}: {e}"
    return None
