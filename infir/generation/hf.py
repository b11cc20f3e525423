"""Generation with any local transformers causal LM (`AutoModelForCausalLM.generate`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from infir.generation.base import Completion, LocalGenerator, OnToken, Prompt, SamplingParams, per_request
from infir.generation.text import IncrementalDetokenizer, encode_prompt, eos_ids_for, find_stop


class HFGenerator(LocalGenerator):
    """Requests with the same sampling parameters run together in left-padded batches.

    Stop strings are applied to the decoded text after each batch; `on_token` is called once per
    generated token after the batch finishes (transformers streams only batch size 1).
    """

    def __init__(
        self, model: Any, tokenizer: Any, eos_ids: set[int] | None = None, batch_size: int = 16
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.eos_ids = (
            eos_ids if eos_ids is not None else eos_ids_for(None, tokenizer, model.config.eos_token_id)
        )
        self.batch_size = batch_size

    @classmethod
    def from_pretrained(
        cls, path: str | Path, device: str | None = None, batch_size: int = 16
    ) -> HFGenerator:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = Path(path)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype).to(device)
        try:
            from infir.model.tokenizer import load_tokenizer

            tokenizer = load_tokenizer(path)
        except Exception:  # noqa: BLE001 - tokenizers infir cannot read load through AutoTokenizer
            tokenizer = AutoTokenizer.from_pretrained(str(path))
        return cls(model, tokenizer, eos_ids_for(path, tokenizer, model.config.eos_token_id), batch_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _logits_fn(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor
    ) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits[rows, cols]

    def loglikelihood(
        self, requests: Sequence[tuple[str, str]], batch_size: int = 8
    ) -> list[tuple[float, int]]:
        from infir.generation.loglik import loglikelihoods

        return loglikelihoods(
            self._logits_fn, self.tokenizer, requests, batch_size=batch_size, device=self.device
        )

    def generate(
        self,
        prompts: Sequence[Prompt],
        params: SamplingParams | Sequence[SamplingParams],
        on_token: OnToken | None = None,
    ) -> list[Completion]:
        plist = per_request(params, len(prompts))
        encoded = [encode_prompt(self.tokenizer, p) for p in prompts]
        groups: dict[tuple, list[int]] = {}
        for i, p in enumerate(plist):
            groups.setdefault((p.max_new_tokens, p.temperature, p.top_p, p.seed), []).append(i)
        results: dict[int, Completion] = {}
        for members in groups.values():
            members.sort(key=lambda i: len(encoded[i]))
            for start in range(0, len(members), self.batch_size):
                idx = members[start : start + self.batch_size]
                for i, c in zip(
                    idx,
                    self._batch([encoded[i] for i in idx], plist[idx[0]], idx, on_token, plist),
                    strict=False,
                ):
                    results[i] = c
        return [results[i] for i in range(len(prompts))]

    @torch.inference_mode()
    def _batch(
        self,
        prompts: list[list[int]],
        p: SamplingParams,
        indices: list[int],
        on_token: OnToken | None,
        plist: list[SamplingParams],
    ) -> list[Completion]:
        width = max(len(x) for x in prompts)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.full((len(prompts), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for r, x in enumerate(prompts):
            ids[r, width - len(x) :] = torch.tensor(x)
            mask[r, width - len(x) :] = 1
        if p.seed is not None:
            torch.manual_seed(p.seed)
        sampling = p.temperature > 0
        extra = {"temperature": p.temperature, "top_p": p.top_p} if sampling else {}
        out = self.model.generate(
            input_ids=ids.to(self.device),
            attention_mask=mask.to(self.device),
            max_new_tokens=p.max_new_tokens,
            do_sample=sampling,
            eos_token_id=sorted(self.eos_ids),
            pad_token_id=pad,
            **extra,
        )[:, width:].tolist()
        completions = []
        for r, generated in enumerate(out):
            tokens, finish, cut = [], "length", None
            detok = IncrementalDetokenizer(self.tokenizer)
            for token in generated:
                if token in self.eos_ids:
                    finish = "stop"
                    break
                tokens.append(token)
                piece = detok.push(token)
                if on_token is not None:
                    on_token(indices[r], token, piece)
                stop_at = find_stop(detok.text, plist[indices[r]].stop, len(piece)) if piece else None
                if stop_at is not None:
                    finish, cut = "stop", stop_at
                    break
            text = self.tokenizer.decode(
                tokens, skip_special_tokens=False, clean_up_tokenization_spaces=False
            )
            if cut is not None:
                text = detok.text[:cut]
            completions.append(Completion(text, tokens, finish, len(prompts[r])))  # type: ignore[arg-type]
        return completions
