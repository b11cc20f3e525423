"""Reward-model scoring with an HF AutoModelForSequenceClassification from a local folder (best-of-N)."""

from __future__ import annotations

import threading
from pathlib import Path

from infir.utils.log import get_logger

log = get_logger(__name__)


class RewardModel:
    """Scores (instruction, response) pairs: the first logit of a sequence-classification head."""

    def __init__(self, path: str | Path, batch_size: int = 8, max_length: int = 4096, device: str | None = None):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.path = str(path)
        self.batch_size = batch_size
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        self.model = AutoModelForSequenceClassification.from_pretrained(self.path).to(self.device).eval()
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.tokenizer.padding_side = "right"
        self.max_length = min(max_length, getattr(self.tokenizer, "model_max_length", max_length) or max_length)
        self._lock = threading.Lock()
        log.info("reward model %s loaded on %s", self.path, self.device)

    def _text(self, instruction: str, response: str) -> str:
        from infir.model.chat_template import render_with_tokenizer

        messages = [{"role": "user", "content": instruction}, {"role": "assistant", "content": response}]
        return render_with_tokenizer(self.tokenizer, messages)

    def score(self, pairs: list[tuple[str, str]]) -> list[float]:
        import torch

        texts = [self._text(q, a) for q, a in pairs]
        scores: list[float] = []
        with self._lock, torch.no_grad():
            for start in range(0, len(texts), self.batch_size):
                batch = self.tokenizer(texts[start:start + self.batch_size], return_tensors="pt", padding=True,
                                       truncation=True, max_length=self.max_length,
                                       add_special_tokens=False).to(self.device)
                logits = self.model(**batch).logits
                scores += logits[:, 0].float().cpu().tolist()
        return scores
