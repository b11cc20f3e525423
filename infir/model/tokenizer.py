"""Llama 3 style tokenizers: byte-level BPE with the Llama 3 split regex and special tokens.

Every tokenizer made here is an HF `PreTrainedTokenizerFast` that carries the Llama 3 chat
template (`infir.model.chat_template`) in its files, so `AutoTokenizer.from_pretrained(dir)`
renders and tokenizes chats exactly as infir does.

Conventions (the same as Meta's Llama 3 / 3.2 HF tokenizers):
- special tokens follow the regular vocabulary: with the real 128,000-token vocabulary
  `<|begin_of_text|>` is 128000, `<|eot_id|>` 128009, ..., `<|reserved_special_token_247|>` 128255;
- `tok(text)` / `tok.encode(text)` prepend `<|begin_of_text|>`; pass `add_special_tokens=False` for raw ids
  (chat templates write `<|begin_of_text|>` themselves and are tokenized without it);
- `bos_token` = `<|begin_of_text|>`, `eos_token` = `<|eot_id|>` (ends an assistant turn),
  `pad_token` = `<|finetune_right_pad_id|>`; `<|end_of_text|>` ends plain documents.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable
from pathlib import Path

from infir.model.chat_template import LLAMA3_CHAT_TEMPLATE
from infir.utils.io import atomic_write_text
from infir.utils.log import get_logger

log = get_logger(__name__)

LLAMA3_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

BOS_TOKEN = "<|begin_of_text|>"
END_OF_TEXT_TOKEN = "<|end_of_text|>"
EOT_TOKEN = "<|eot_id|>"
PAD_TOKEN = "<|finetune_right_pad_id|>"

# The named Llama 3.1/3.2 special tokens at offsets 0..10 from the end of the regular vocabulary.
_NAMED_SPECIAL_TOKENS = (
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|reserved_special_token_0|>",
    "<|reserved_special_token_1|>",
    "<|finetune_right_pad_id|>",
    "<|reserved_special_token_2|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eom_id|>",
    "<|eot_id|>",
    "<|python_tag|>",
)


def llama3_special_tokens(count: int = 256) -> list[str]:
    """The first `count` Llama 3 special tokens in id order (the named ones, then reserved 3, 4, ...)."""
    if count < len(_NAMED_SPECIAL_TOKENS):
        raise ValueError(f"need at least {len(_NAMED_SPECIAL_TOKENS)} special tokens, got {count}")
    reserved = [f"<|reserved_special_token_{3 + i}|>" for i in range(count - len(_NAMED_SPECIAL_TOKENS))]
    return [*_NAMED_SPECIAL_TOKENS, *reserved]


LLAMA3_SPECIAL_TOKENS: list[str] = llama3_special_tokens(256)


def _byte_level_pipeline(backend, pattern: str) -> None:
    """Set the Llama 3 pre-tokenizer (regex split, then bytes) and the byte-level decoder."""
    from tokenizers import Regex, decoders, pre_tokenizers

    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    backend.decoder = decoders.ByteLevel()


def _finish(backend, special_tokens: list[str]):
    """Append the special tokens, make encode() prepend BOS, and wrap as a chat-ready HF tokenizer."""
    from tokenizers import AddedToken, processors
    from transformers import PreTrainedTokenizerFast

    first_special_id = backend.get_vocab_size(with_added_tokens=True)
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in special_tokens])
    bos_id = backend.token_to_id(BOS_TOKEN)
    if bos_id != first_special_id:
        raise ValueError(f"{BOS_TOKEN} got id {bos_id}, expected {first_special_id}: was it in the vocabulary?")
    backend.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(
            single=f"{BOS_TOKEN} $A",
            pair=f"{BOS_TOKEN} $A {BOS_TOKEN} $B:1",
            special_tokens=[(BOS_TOKEN, bos_id)],
        ),
    ])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS_TOKEN,
        eos_token=EOT_TOKEN,
        pad_token=PAD_TOKEN,
        chat_template=LLAMA3_CHAT_TEMPLATE,
        model_max_length=131072,
        clean_up_tokenization_spaces=False,
    )


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int, num_special_tokens: int | None = None,
                        min_frequency: int = 2, pattern: str = LLAMA3_SPLIT_PATTERN):
    """Train a byte-level BPE tokenizer whose total size (special tokens included) is at most `vocab_size`.

    The learned vocabulary (256 bytes + merges) comes first, then `num_special_tokens` Llama 3
    special tokens (default 256 like Llama 3, or 16 when vocab_size < 2048 so tiny models keep merges).
    Fewer merges than asked are learned when the texts run out of pairs (a warning says so).
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    if num_special_tokens is None:
        num_special_tokens = 256 if vocab_size >= 2048 else 16
    learned = vocab_size - num_special_tokens
    if learned < 256:
        raise ValueError(f"vocab_size {vocab_size} leaves {learned} regular tokens after {num_special_tokens} "
                         "special tokens; byte-level BPE needs at least 256")
    backend = Tokenizer(models.BPE(fuse_unk=False))
    _byte_level_pipeline(backend, pattern)
    trainer = trainers.BpeTrainer(vocab_size=learned, min_frequency=min_frequency, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
    backend.train_from_iterator(texts, trainer=trainer)
    got = backend.get_vocab_size()
    if got < learned:
        log.warning("BPE learned %d regular tokens of the %d asked (too little text); total size %d",
                    got, learned, got + num_special_tokens)
    return _finish(backend, llama3_special_tokens(num_special_tokens))


def _is_tiktoken_file(path: Path) -> bool:
    """A tiktoken ranks file is text lines 'base64 rank' (a sentencepiece .model is binary protobuf)."""
    with open(path, "rb") as f:
        first = f.readline(4096).split()
    return len(first) == 2 and first[1].isdigit()


def _cache_dir() -> Path:
    root = os.environ.get("INFIR_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "infir")
    return Path(root).expanduser() / "tokenizers"


@functools.lru_cache(maxsize=4)
def _tiktoken_backend_json(path: str, mtime: float, size: int, pattern: str) -> str:
    """The converted backend as JSON; cached in memory and on disk (keyed by file and pattern hashes)."""
    import hashlib

    from transformers.convert_slow_tokenizer import TikTokenConverter

    key = hashlib.sha256(Path(path).read_bytes() + pattern.encode()).hexdigest()[:24]
    cached = _cache_dir() / f"tiktoken-{key}.json"
    if cached.exists():
        return cached.read_text(encoding="utf-8")
    log.info("converting tiktoken ranks %s to a fast tokenizer (cached in %s)", path, cached.parent)
    backend = TikTokenConverter(vocab_file=path, pattern=pattern).tokenizer()
    _byte_level_pipeline(backend, pattern)
    text = backend.to_str()
    try:
        atomic_write_text(cached, text)
    except OSError as e:  # a read-only home must not stop anyone
        log.warning("could not cache the converted tokenizer in %s: %s", cached, e)
    return text


def tokenizer_from_tiktoken(path: str | os.PathLike, pattern: str = LLAMA3_SPLIT_PATTERN,
                            num_special_tokens: int = 256):
    """Build the HF fast tokenizer for a tiktoken ranks file (e.g. Meta's Llama 3 `tokenizer.model`)."""
    from tokenizers import Tokenizer

    path = Path(path).resolve()
    stat = path.stat()
    backend = Tokenizer.from_str(_tiktoken_backend_json(str(path), stat.st_mtime, stat.st_size, pattern))
    return _finish(backend, llama3_special_tokens(num_special_tokens))


def load_tokenizer(path: str | os.PathLike):
    """Load an HF tokenizer folder, or a tiktoken ranks file (or a folder holding only `tokenizer.model`).

    A folder's own chat template is kept; one without a template gets the Llama 3 template when
    it has the Llama 3 header tokens.
    """
    from transformers import AutoTokenizer

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no tokenizer at {path}")
    if path.is_file():
        if _is_tiktoken_file(path):
            return tokenizer_from_tiktoken(path)
        raise ValueError(f"{path}: not a tiktoken ranks file; pass the HF tokenizer folder instead")
    has_hf_files = (path / "tokenizer.json").exists() or (path / "tokenizer_config.json").exists()
    if not has_hf_files and (path / "tokenizer.model").exists() and _is_tiktoken_file(path / "tokenizer.model"):
        return tokenizer_from_tiktoken(path / "tokenizer.model")
    tok = AutoTokenizer.from_pretrained(str(path))
    if not getattr(tok, "chat_template", None):
        vocab = tok.get_vocab()
        if all(t in vocab for t in ("<|start_header_id|>", "<|end_header_id|>", EOT_TOKEN, BOS_TOKEN)):
            tok.chat_template = LLAMA3_CHAT_TEMPLATE
        else:
            log.warning("%s has no chat template and no Llama 3 header tokens; chat rendering will fail", path)
    return tok


def save_tokenizer(tokenizer, out_dir: str | os.PathLike) -> Path:
    """Save with `save_pretrained` (tokenizer.json, tokenizer_config.json, chat template)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = LLAMA3_CHAT_TEMPLATE
    tokenizer.save_pretrained(str(out_dir))
    return out_dir
