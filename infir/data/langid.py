"""Optional language identification with fastText's lid.176 model (a local file)."""

from __future__ import annotations

from pathlib import Path


class LanguageId:
    def __init__(self, model_path: str | Path):
        import fasttext

        path = Path(model_path)
        if not path.exists():
            raise FileNotFoundError(f"fastText language-id model not found: {path} (lid.176.ftz or .bin)")
        fasttext.FastText.eprint = lambda *a, **k: None  # silence its load warning
        self.model = fasttext.load_model(str(path))

    def predict(self, text: str) -> tuple[str, float]:
        """(ISO language code, probability) of the text's top language."""
        labels, probs = self.model.predict(" ".join(text.split())[:20_000], k=1)
        return labels[0].removeprefix("__label__"), float(probs[0])
