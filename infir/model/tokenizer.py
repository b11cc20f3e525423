"""Byte-level BPE tokenizers of two families: Llama 3 (split regex, special tokens, chat template) and Qwen2.

Every tokenizer made here is an HF `PreTrainedTokenizerFast` that carries its family's chat template
(`infir.model.chat_template`) in its files, so `AutoTokenizer.from_pretrained(dir)` renders and
tokenizes chats exactly as infir does.

Conventions (the same as Meta's Llama 3 / 3.2 HF tokenizers):
- special tokens follow the regular vocabulary: with the real 128,000-token vocabulary
  `<|begin_of_text|>` is 128000, `<|eot_id|>` 128009, ..., `<|reserved_special_token_247|>` 128255;
- `tok(text)` / `tok.encode(text)` prepend `<|begin_of_text|>`; pass `add_special_tokens=False` for raw ids
  (chat templates write `<|begin_of_text|>` themselves and are tokenized without it);
- `bos_token` = `<|begin_of_text|>`, `eos_token` = `<|eot_id|>` (ends an assistant turn),
  `pad_token` = `<|finetune_right_pad_id|>`; `<|end_of_text|>` ends plain documents.

Qwen2 / Qwen2.5 conventions (`family="qwen2"`): NFC normalisation, the Qwen split regex (single digits), the
22 Qwen2.5 special tokens after the regular vocabulary (`<|endoftext|>` first: 151643 with the real 151,643-token
vocabulary, `<|im_start|>` 151644, `<|im_end|>` 151645), no BOS, `eos_token` = `pad_token` = `<|endoftext|>`
(Qwen2.5 base models; Instruct folders name `<|im_end|>` as eos), the ChatML template.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from infir.model.chat_template import CHATML_CHAT_TEMPLATE, LLAMA3_CHAT_TEMPLATE
from infir.utils.io import atomic_write_text
from infir.utils.log import get_logger

log = get_logger(__name__)

LLAMA3_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

BOS_TOKEN = "<|begin_of_text|>"
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

QWEN2_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# Qwen2.5's added tokens in id order (151643..151664); the last eight are not marked special in its files.
QWEN2_SPECIAL_TOKENS: list[str] = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
    "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
    "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>",
    "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>",
]
_QWEN2_NOT_SPECIAL = set(QWEN2_SPECIAL_TOKENS[14:])


@dataclass(frozen=True)
class TokenizerFamily:
    name: str
    pattern: str
    bos: str | None  # prepended by encode() (None: nothing)
    eos: str
    pad: str
    chat_template: str
    nfc: bool  # Unicode NFC normalisation before splitting

    def special_tokens(self, count: int | None) -> list[str]:
        if self.name == "qwen2":
            return list(QWEN2_SPECIAL_TOKENS)
        return llama3_special_tokens(256 if count is None else count)


FAMILIES = {
    "llama3": TokenizerFamily("llama3", LLAMA3_SPLIT_PATTERN, BOS_TOKEN, EOT_TOKEN, PAD_TOKEN, LLAMA3_CHAT_TEMPLATE,
                              nfc=False),
    "qwen2": TokenizerFamily("qwen2", QWEN2_SPLIT_PATTERN, None, "<|endoftext|>", "<|endoftext|>",
                             CHATML_CHAT_TEMPLATE, nfc=True),
}


def _family(name: str) -> TokenizerFamily:
    if name not in FAMILIES:
        raise ValueError(f"unknown tokenizer family {name!r}; choose from {sorted(FAMILIES)}")
    return FAMILIES[name]


def _byte_level_pipeline(backend, pattern: str, nfc: bool = False) -> None:
    """Set the pre-tokenizer (regex split, then bytes; NFC first for Qwen2) and the byte-level decoder."""
    from tokenizers import Regex, decoders, normalizers, pre_tokenizers

    if nfc:
        backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    backend.decoder = decoders.ByteLevel()


def _finish(backend, special_tokens: list[str], family: TokenizerFamily = FAMILIES["llama3"]):
    """Append the special tokens, make encode() prepend BOS (if the family has one), and wrap as a
    chat-ready HF tokenizer."""
    from tokenizers import AddedToken, processors
    from transformers import PreTrainedTokenizerFast

    first_special_id = backend.get_vocab_size(with_added_tokens=True)
    not_special = _QWEN2_NOT_SPECIAL if family.name == "qwen2" else set()
    for t in special_tokens:  # in order, so ids follow the list; Qwen2.5's last eight are plain added tokens
        if t in not_special:
            backend.add_tokens([AddedToken(t, special=False, normalized=False)])
        else:
            backend.add_special_tokens([AddedToken(t, special=True, normalized=False)])
    first = special_tokens[0]
    if backend.token_to_id(first) != first_special_id:
        raise ValueError(f"{first} got id {backend.token_to_id(first)}, expected {first_special_id}: "
                         "was it in the vocabulary?")
    post = [processors.ByteLevel(trim_offsets=False)]
    if family.bos is not None:
        bos_id = backend.token_to_id(family.bos)
        post.append(processors.TemplateProcessing(
            single=f"{family.bos} $A",
            pair=f"{family.bos} $A {family.bos} $B:1",
            special_tokens=[(family.bos, bos_id)],
        ))
    backend.post_processor = processors.Sequence(post)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=family.bos,
        eos_token=family.eos,
        pad_token=family.pad,
        chat_template=family.chat_template,
        model_max_length=131072,
        clean_up_tokenization_spaces=False,
    )


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int, num_special_tokens: int | None = None,
                        min_frequency: int = 2, pattern: str | None = None, family: str = "llama3"):
    """Train a byte-level BPE tokenizer whose total size (special tokens included) is at most `vocab_size`.

    The learned vocabulary (256 bytes + merges) comes first, then the family's special tokens: for Llama 3
    `num_special_tokens` of them (default 256 like Llama 3, or 16 when vocab_size < 2048 so tiny models keep
    merges), for Qwen2 its 22. Fewer merges than asked are learned when the texts run out of pairs (a warning
    says so).
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    fam = _family(family)
    pattern = pattern or fam.pattern
    if num_special_tokens is None:
        num_special_tokens = 256 if vocab_size >= 2048 else 16
    if fam.name == "qwen2":
        num_special_tokens = len(QWEN2_SPECIAL_TOKENS)
    learned = vocab_size - num_special_tokens
    if learned < 256:
        raise ValueError(f"vocab_size {vocab_size} leaves {learned} regular tokens after {num_special_tokens} "
                         "special tokens; byte-level BPE needs at least 256")
    backend = Tokenizer(models.BPE(fuse_unk=False))
    _byte_level_pipeline(backend, pattern, nfc=fam.nfc)
    trainer = trainers.BpeTrainer(vocab_size=learned, min_frequency=min_frequency, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
    backend.train_from_iterator(texts, trainer=trainer)
    got = backend.get_vocab_size()
    if got < learned:
        log.warning("BPE learned %d regular tokens of the %d asked (too little text); total size %d",
                    got, learned, got + num_special_tokens)
    return _finish(backend, fam.special_tokens(num_special_tokens), fam)


def _is_tiktoken_file(path: Path) -> bool:
    """A tiktoken ranks file is text lines 'base64 rank' (a sentencepiece .model is binary protobuf)."""
    with open(path, "rb") as f:
        first = f.readline(4096).split()
    return len(first) == 2 and first[1].isdigit()


def _cache_dir() -> Path:
    root = os.environ.get("INFIR_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "infir")
    return Path(root).expanduser() / "tokenizers"


@functools.lru_cache(maxsize=4)
def _tiktoken_backend_json(path: str, mtime: float, size: int, pattern: str, nfc: bool = False) -> str:
    """The converted backend as JSON; cached in memory and on disk (keyed by file and pattern hashes)."""
    import hashlib

    from transformers.convert_slow_tokenizer import TikTokenConverter

    key = hashlib.sha256(Path(path).read_bytes() + pattern.encode() + (b"nfc" if nfc else b"")).hexdigest()[:24]
    cached = _cache_dir() / f"tiktoken-{key}.json"
    if cached.exists():
        return cached.read_text(encoding="utf-8")
    log.info("converting tiktoken ranks %s to a fast tokenizer (cached in %s)", path, cached.parent)
    backend = TikTokenConverter(vocab_file=path, pattern=pattern).tokenizer()
    _byte_level_pipeline(backend, pattern, nfc=nfc)
    text = backend.to_str()
    try:
        atomic_write_text(cached, text)
    except OSError as e:  # a read-only home must not stop anyone
        log.warning("could not cache the converted tokenizer in %s: %s", cached, e)
    return text


QWEN2_VOCABULARY_SIZE = 151643  # regular tokens of Qwen / Qwen2 / Qwen2.5 (`qwen.tiktoken`)


def _tiktoken_family(path: Path) -> str:
    """qwen2 for Qwen's ranks file (151,643 ranks), llama3 otherwise (Meta's file and custom ones)."""
    with open(path, "rb") as f:
        lines = sum(1 for line in f if line.strip())
    return "qwen2" if lines == QWEN2_VOCABULARY_SIZE else "llama3"


def tokenizer_from_tiktoken(path: str | os.PathLike, pattern: str | None = None,
                            num_special_tokens: int = 256, family: str = "auto"):
    """Build the HF fast tokenizer for a tiktoken ranks file: Meta's Llama 3 `tokenizer.model`, or Qwen's
    `qwen.tiktoken` (the Qwen2/Qwen2.5 vocabulary; `family="auto"` tells them apart by size)."""
    from tokenizers import Tokenizer

    path = Path(path).resolve()
    fam = _family(_tiktoken_family(path) if family == "auto" else family)
    pattern = pattern or fam.pattern
    stat = path.stat()
    backend = Tokenizer.from_str(_tiktoken_backend_json(str(path), stat.st_mtime, stat.st_size, pattern, fam.nfc))
    return _finish(backend, fam.special_tokens(num_special_tokens), fam)


def load_tokenizer(path: str | os.PathLike):
    """Load an HF tokenizer folder, or a tiktoken ranks file (or a folder holding only `tokenizer.model`).

    A folder's own chat template is kept; one without a template gets the template of the family whose chat
    tokens it has (Llama 3 headers or ChatML), see `infir.model.registry.default_chat_template`.
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
        from infir.model.registry import default_chat_template

        template = default_chat_template(tok)
        if template is not None:
            tok.chat_template = template
        else:
            log.warning("%s has no chat template and none of the known chat tokens; chat rendering will fail", path)
    return tok


def save_tokenizer(tokenizer, out_dir: str | os.PathLike) -> Path:
    """Save with `save_pretrained` (tokenizer.json, tokenizer_config.json, chat template)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not getattr(tokenizer, "chat_template", None):
        from infir.model.registry import default_chat_template

        tokenizer.chat_template = default_chat_template(tokenizer) or LLAMA3_CHAT_TEMPLATE
    tokenizer.save_pretrained(str(out_dir))
    return out_dir
