"""An OpenAI-compatible server as the generation engine (`infir serve`, vLLM, ...)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from infir.generation.base import Completion, Message, OnToken, Prompt, SamplingParams, per_request


class OpenAIGenerator:
    """Sends each request to `/v1/completions` (or `/v1/chat/completions`), several at a time.

    `base_url` may end in `/v1` or not. The model name is the server's first model unless given.
    Token ids are filled in when the server returns them (`token_ids` in a choice); otherwise empty.
    """

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        api_key: str | None = None,
        concurrency: int = 8,
        timeout_s: float = 600.0,
    ) -> None:
        url = base_url.rstrip("/")
        self.base_url = url if url.endswith("/v1") else url + "/v1"
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout_s)
        self.concurrency = concurrency
        self.model = model or self._first_model()

    def _first_model(self) -> str:
        response = self.client.get("/models")
        response.raise_for_status()
        models = response.json().get("data", [])
        if not models:
            raise RuntimeError(f"{self.base_url}/models lists no model; pass model=...")
        return models[0]["id"]

    def close(self) -> None:
        self.client.close()

    @staticmethod
    def _body(p: SamplingParams) -> dict[str, Any]:
        body: dict[str, Any] = {
            "max_tokens": p.max_new_tokens,
            "temperature": p.temperature,
            "top_p": p.top_p,
        }
        if p.stop:
            body["stop"] = list(p.stop)
        if p.seed is not None:
            body["seed"] = p.seed
        return body

    def _request(
        self, path: str, body: dict[str, Any], index: int, on_token: OnToken | None, chat: bool
    ) -> Completion:
        if on_token is None:
            response = self.client.post(path, json=body)
            response.raise_for_status()
            data = response.json()
            choice = data["choices"][0]
            text = choice["message"]["content"] if chat else choice["text"]
            return Completion(
                text or "",
                list(choice.get("token_ids") or []),
                "length" if choice.get("finish_reason") == "length" else "stop",
                int((data.get("usage") or {}).get("prompt_tokens", 0)),
            )
        pieces: list[str] = []
        finish, prompt_tokens = "stop", 0
        with self.client.stream(
            "POST", path, json={**body, "stream": True, "stream_options": {"include_usage": True}}
        ) as response:
            response.raise_for_status()
            for line in response.iter_lines():
                if not line.startswith("data:"):
                    continue
                payload = line[5:].strip()
                if payload == "[DONE]":
                    break
                event = json.loads(payload)
                if event.get("usage"):
                    prompt_tokens = int(event["usage"].get("prompt_tokens", 0))
                for choice in event.get("choices", []):
                    piece = (choice.get("delta") or {}).get("content") if chat else choice.get("text")
                    if piece:
                        pieces.append(piece)
                        on_token(index, -1, piece)
                    if choice.get("finish_reason"):
                        finish = "length" if choice["finish_reason"] == "length" else "stop"
        return Completion("".join(pieces), [], finish, prompt_tokens)  # type: ignore[arg-type]

    def _run(
        self, path: str, bodies: list[dict[str, Any]], on_token: OnToken | None, chat: bool
    ) -> list[Completion]:
        with ThreadPoolExecutor(max_workers=max(1, min(self.concurrency, len(bodies)))) as pool:
            futures = [
                pool.submit(self._request, path, body, i, on_token, chat) for i, body in enumerate(bodies)
            ]
            return [f.result() for f in futures]

    def generate(
        self,
        prompts: Sequence[Prompt],
        params: SamplingParams | Sequence[SamplingParams],
        on_token: OnToken | None = None,
    ) -> list[Completion]:
        plist = per_request(params, len(prompts))
        bodies = [
            {"model": self.model, "prompt": prompt, **self._body(p)}
            for prompt, p in zip(prompts, plist, strict=False)
        ]
        return self._run("/completions", bodies, on_token, chat=False)

    def generate_chat(
        self,
        conversations: Sequence[Sequence[Message]],
        params: SamplingParams | Sequence[SamplingParams],
        on_token: OnToken | None = None,
    ) -> list[Completion]:
        plist = per_request(params, len(conversations))
        bodies = [
            {"model": self.model, "messages": list(c), **self._body(p)}
            for c, p in zip(conversations, plist, strict=False)
        ]
        return self._run("/chat/completions", bodies, on_token, chat=True)

    def loglikelihood(
        self, requests: Sequence[tuple[str, str]], batch_size: int = 8
    ) -> list[tuple[float, int]]:
        """Scores via `echo` + `logprobs` on /v1/completions (vLLM supports it; not every server does)."""
        results = []
        for context, continuation in requests:
            body = {
                "model": self.model,
                "prompt": context + continuation,
                "max_tokens": 1,
                "echo": True,
                "logprobs": 1,
                "temperature": 0.0,
            }
            response = self.client.post("/completions", json=body)
            if response.status_code >= 400:
                raise RuntimeError(
                    f"{self.base_url} cannot score log-likelihoods (echo + logprobs refused: "
                    f"{response.status_code} {response.text[:200]}); run log-likelihood tasks such as "
                    "mmlu (base mode) and nll on a local model folder, or use --mode chat for mmlu"
                )
            logprobs = response.json()["choices"][0].get("logprobs") or {}
            offsets, values = logprobs.get("text_offset"), logprobs.get("token_logprobs")
            if not offsets or not values:
                raise RuntimeError(
                    f"{self.base_url} returned no prompt logprobs; log-likelihood tasks need echo+logprobs"
                )
            picked = [
                v
                for o, v in zip(offsets, values, strict=False)
                if o >= len(context) and o < len(context + continuation) and v is not None
            ]
            results.append((float(sum(picked)), len(picked)))
        return results
