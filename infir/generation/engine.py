"""Batched generation for infir models (any `infir.model.base.CausalLM`): one preallocated KV cache per batch,
left padding. Prompts are text, token ids, or token ids with their input embeddings (`EmbeddedPrompt`: the VLM's
image features spliced into the prefill)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from infir.generation.base import Completion, LocalGenerator, OnToken, Prompt, SamplingParams, per_request
from infir.generation.static_decode import GraphedDecodeStep, StaticDecodeStep
from infir.generation.text import IncrementalDetokenizer, encode_prompt, eos_ids_for, find_stop


@dataclass
class EmbeddedPrompt:
    """A prompt whose prefill uses these input embeddings instead of the token embeddings.

    token_ids: the prompt's ids (placeholders where embeddings were spliced in; counted as prompt tokens);
    embeds: [len(token_ids), hidden] rows fed to the model for the prefill. Decoding continues from token ids.
    """

    token_ids: list[int]
    embeds: torch.Tensor

    def __post_init__(self) -> None:
        if self.embeds.dim() != 2 or self.embeds.shape[0] != len(self.token_ids):
            raise ValueError(f"embeds must be [{len(self.token_ids)}, hidden] (one row per prompt token), "
                             f"got {list(self.embeds.shape)}")


def sample_next(
    logits: torch.Tensor, params: Sequence[SamplingParams], generators: Sequence[Any]
) -> torch.Tensor:
    """One next token per row: argmax for greedy rows, nucleus sampling with the row's own RNG otherwise."""
    out = logits.argmax(dim=-1)
    for row, p in enumerate(params):
        if p.temperature <= 0:
            continue
        probs = torch.softmax(logits[row].float() / p.temperature, dim=-1)
        if p.top_p < 1.0:
            sorted_p, sorted_i = probs.sort(descending=True)
            keep = sorted_p.cumsum(0) - sorted_p < p.top_p  # always keeps the top token
            probs = torch.zeros_like(probs).scatter(0, sorted_i[keep], sorted_p[keep])
        # Sample on CPU with the row's generator so a seed gives the same text on any device/batch.
        out[row] = torch.multinomial(probs.cpu(), 1, generator=generators[row]).item()
    return out


class InfirGenerator(LocalGenerator):
    """Generation for infir models of any registered architecture.

    decode: "auto" (cuda_graph on a CUDA device, else dynamic), "dynamic" (the model's own KV-cache
    forward; best on CPU), "static" (fixed-shape decode
    step, eager; a reference for the next one), or "cuda_graph" (the static step captured as a CUDA
    graph per batch size; CUDA only; 4.95x HF generate on an H100, bench/RESULTS.md).
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        eos_ids: set[int] | None = None,
        batch_size: int = 16,
        decode: str = "auto",
    ) -> None:
        if decode not in ("auto", "dynamic", "static", "cuda_graph"):
            raise ValueError(f"decode must be auto, dynamic, static or cuda_graph, got {decode!r}")
        on_cuda = next(model.parameters()).device.type == "cuda"  # lm_head may be a quantized module
        if decode == "auto":
            decode = "cuda_graph" if on_cuda else "dynamic"
        if decode == "cuda_graph" and not on_cuda:
            raise ValueError("decode='cuda_graph' needs the model on a CUDA device")
        self.decode = decode
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.eos_ids = (
            eos_ids if eos_ids is not None else eos_ids_for(None, tokenizer, model.config.eos_token_id)
        )
        self.batch_size = batch_size
        self.max_context = model.config.max_position_embeddings

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        device: str | None = None,
        batch_size: int = 16,
        dtype: torch.dtype | None = None,
        decode: str = "auto",
    ) -> InfirGenerator:
        from infir.model.hf_io import load_model  # any registered architecture (infir.model.registry)
        from infir.model.tokenizer import load_tokenizer

        path = Path(path)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if dtype is None and device.startswith("cuda"):
            dtype = torch.bfloat16
        model = load_model(path, device=device, dtype=dtype)
        tokenizer = load_tokenizer(path)
        eos = eos_ids_for(path, tokenizer, model.config.eos_token_id)
        return cls(model, tokenizer, eos, batch_size, decode=decode)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device  # lm_head may be a quantized module

    def generate(
        self,
        prompts: Sequence[Prompt | EmbeddedPrompt],
        params: SamplingParams | Sequence[SamplingParams],
        on_token: OnToken | None = None,
    ) -> list[Completion]:
        plist = per_request(params, len(prompts))
        encoded: list[list[int]] = []
        embeds: list[torch.Tensor | None] = []
        for p, q in zip(prompts, plist, strict=True):
            ids = p.token_ids if isinstance(p, EmbeddedPrompt) else encode_prompt(self.tokenizer, p)
            kept = self._fit(ids, q.max_new_tokens)
            encoded.append(kept)
            embeds.append(p.embeds[len(ids) - len(kept):] if isinstance(p, EmbeddedPrompt) else None)
        # Similar lengths together: less padding, fewer wasted steps.
        order = sorted(range(len(prompts)), key=lambda i: (len(encoded[i]), plist[i].max_new_tokens))
        results: list[Completion | None] = [None] * len(prompts)
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            batch = self._generate_batch([encoded[i] for i in idx], [plist[i] for i in idx], idx, on_token,
                                         [embeds[i] for i in idx])
            for i, completion in zip(idx, batch, strict=False):
                results[i] = completion
        return [r for r in results if r is not None]

    def _compact(self, live: int, rows: int) -> bool:
        """Whether to drop finished rows from the batch now.

        Dynamic decoding drops them at once (each step then computes fewer rows). A CUDA graph must be
        captured again for every new batch size, which costs more than a decode step, so with graphs
        finished rows ride along (a decode step costs about the same for any small batch: it reads the
        weights) until at most half the rows are live: at most log2(batch) captures per batch. The
        eager static step follows the graphed policy, so CPU tests check it.
        """
        if live == rows:
            return False
        return self.decode == "dynamic" or live <= rows // 2

    def _fit(self, ids: list[int], max_new_tokens: int) -> list[int]:
        """Cut a prompt from the left so prompt + generation fit the context (lm-eval does the same)."""
        room = max(1, self.max_context - max_new_tokens)
        return ids if len(ids) <= room else ids[-room:]

    def _logits_fn(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor
    ) -> torch.Tensor:
        hidden = self.model(input_ids, attention_mask=attention_mask, return_hidden=True)
        return self.model.lm_head(hidden[rows, cols])

    def loglikelihood(
        self, requests: Sequence[tuple[str, str]], batch_size: int = 8
    ) -> list[tuple[float, int]]:
        from infir.generation.loglik import loglikelihoods

        return loglikelihoods(
            self._logits_fn,
            self.tokenizer,
            requests,
            batch_size=batch_size,
            device=self.device,
            max_length=self.max_context,
        )

    def _prefill_embeds(self, ids: torch.Tensor, embeds: list[torch.Tensor | None]) -> torch.Tensor:
        """[B, width, hidden]: token embeddings of the left-padded batch, rows with their own embeddings replaced."""
        out = self.model.embed_tokens(ids)
        width = ids.shape[1]
        for r, e in enumerate(embeds):
            if e is not None:
                out[r, width - e.shape[0] :] = e.to(device=out.device, dtype=out.dtype)
        return out

    @torch.inference_mode()
    def _generate_batch(
        self,
        prompts: list[list[int]],
        params: list[SamplingParams],
        indices: list[int],
        on_token: OnToken | None,
        embeds: list[torch.Tensor | None] | None = None,
    ) -> list[Completion]:
        device, b = self.device, len(prompts)
        width = max(len(p) for p in prompts)
        budgets = [
            max(0, min(p.max_new_tokens, self.max_context - len(ids)))
            for p, ids in zip(params, prompts, strict=False)
        ]
        steps = max(budgets)
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.full((b, width), pad, dtype=torch.long)
        mask = torch.zeros((b, width + steps), dtype=torch.long)
        for r, p in enumerate(prompts):
            ids[r, width - len(p) :] = torch.tensor(p, dtype=torch.long)
            mask[r, width - len(p) :] = 1  # generated positions count as real too
        ids, mask = ids.to(device), mask.to(device)
        positions = (mask[:, :width].cumsum(-1) - 1).clamp(min=0)
        generators = [torch.Generator().manual_seed(p.seed) if p.seed is not None else None for p in params]
        for r, p in enumerate(params):
            if p.temperature > 0 and generators[r] is None:
                generators[r] = torch.Generator().manual_seed(int(torch.randint(0, 2**31 - 1, ()).item()))
        detoks = [IncrementalDetokenizer(self.tokenizer) for _ in range(b)]
        tokens: list[list[int]] = [[] for _ in range(b)]
        finish: list[str | None] = ["length" if budget == 0 else None for budget in budgets]
        cut_at: list[int | None] = [None] * b
        cache = self.model.new_kv_cache(b, width + steps)
        prefill = self._prefill_embeds(ids, embeds) if embeds and any(e is not None for e in embeds) else None
        logits = self.model(ids, position_ids=positions, kv_cache=cache, attention_mask=mask[:, :width],
                            inputs_embeds=prefill)[:, -1]
        next_pos = positions[:, -1:] + 1
        rows = list(range(b))  # batch row held by each cache row
        live = list(range(b))  # cache rows still decoding
        stepper: Any = None  # the static/graphed decode step for the current cache rows
        for step in range(steps):
            next_ids = sample_next(
                logits[live] if len(live) < len(rows) else logits,
                [params[rows[j]] for j in live],
                [generators[rows[j]] for j in live],
            ).tolist()
            for j, token in zip(live, next_ids, strict=True):
                r = rows[j]
                if token in self.eos_ids:
                    finish[r] = "stop"
                    continue
                tokens[r].append(token)
                piece = detoks[r].push(token)
                if on_token is not None:
                    on_token(indices[r], token, piece)
                stop_at = find_stop(detoks[r].text, params[r].stop, len(piece)) if piece else None
                if stop_at is not None:
                    finish[r], cut_at[r] = "stop", stop_at
                elif len(tokens[r]) >= budgets[r]:
                    finish[r] = "length"
            step_tokens = torch.zeros(len(rows), dtype=torch.long, device=device)  # finished rows: ignored
            step_tokens[live] = torch.tensor(next_ids, dtype=torch.long, device=device)
            live = [j for j in live if finish[rows[j]] is None]
            if not live or step == steps - 1:
                break
            if self._compact(len(live), len(rows)):  # drop finished rows: later steps compute live ones only
                sel = torch.tensor(live, device=device)
                cache.select_rows(sel)
                mask, next_pos = mask.index_select(0, sel), next_pos.index_select(0, sel)
                step_tokens = step_tokens.index_select(0, sel)
                rows, live = [rows[j] for j in live], list(range(len(live)))
                stepper = None  # new cache tensors: capture again
            step_ids = step_tokens[:, None]
            if self.decode == "dynamic":
                logits = self.model(
                    step_ids,
                    position_ids=next_pos,
                    kv_cache=cache,
                    attention_mask=mask[:, : width + step + 1],
                )[:, -1]
            else:
                if stepper is None:
                    stepper = (
                        GraphedDecodeStep(self.model, cache, len(rows))
                        if self.decode == "cuda_graph"
                        else StaticDecodeStep(self.model, cache)
                    )
                logits = stepper(step_ids, next_pos, torch.tensor([width + step], device=device))
            next_pos = next_pos + 1
        out = []
        for r in range(b):
            text = self.tokenizer.decode(
                tokens[r], skip_special_tokens=False, clean_up_tokenization_spaces=False
            )
            if cut_at[r] is not None:
                text = detoks[r].text[: cut_at[r]]
            out.append(
                Completion(
                    text=text,
                    token_ids=tokens[r],
                    finish_reason=finish[r] or "length",  # type: ignore[arg-type]
                    prompt_tokens=len(prompts[r]),
                )
            )
        return out
