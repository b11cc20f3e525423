"""The embedded tiny corpus: real text found on any machine with Python, plus generated math.

- code: the standard library's own source files;
- docs: `pydoc_data` topic pages and module docstrings (English technical prose);
- math: generated arithmetic word problems with step-by-step solutions ending in `#### N`;
- noise that real crawls carry: exact and near duplicates, navigation boilerplate, very short pages,
  and a few pages that quote evaluation problems verbatim (so decontamination has work).

Everything is deterministic for a given seed. Held-out math problems form the eval set and SFT data.
"""

from __future__ import annotations

import importlib
import pkgutil
import random
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from infir.utils.io import write_jsonl


class BuiltinCorpusConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code_files: int = 120
    max_code_chars: int = 12000
    doc_modules: int = 250
    math_train: int = 1500
    math_test: int = 60
    problems_per_page: int = 5
    heldout_code_files: int = 8
    duplicate_fraction: float = 0.08
    near_duplicate_fraction: float = 0.08
    boilerplate_pages: int = 60
    short_pages: int = 60
    contaminated_pages: int = 6
    seed: int = 0


# --------------------------------------------------------------------------- math word problems


@dataclass
class MathProblem:
    question: str
    steps: list[str]
    answer: int

    @property
    def solution(self) -> str:
        return "\n".join(self.steps) + f"\n#### {self.answer}"


_NAMES = [
    "Ava",
    "Ben",
    "Chen",
    "Dara",
    "Eli",
    "Fatima",
    "Gus",
    "Hana",
    "Ivan",
    "Jo",
    "Kofi",
    "Lena",
    "Mateo",
    "Nora",
]
_ITEMS = [
    ("apples", "box"),
    ("pencils", "pack"),
    ("marbles", "bag"),
    ("stickers", "sheet"),
    ("cookies", "tray"),
    ("books", "shelf"),
    ("eggs", "carton"),
    ("cards", "deck"),
]


def _plural(noun: str) -> str:
    return noun + ("es" if noun.endswith(("x", "s", "sh", "ch")) else "s")


def _problem(rng: random.Random) -> MathProblem:
    name, other = rng.sample(_NAMES, 2)
    item, unit = rng.choice(_ITEMS)
    kind = rng.randrange(6)
    if kind == 0:
        n, per, eat = rng.randint(2, 9), rng.randint(3, 12), rng.randint(1, 9)
        total = n * per
        return MathProblem(
            f"{name} buys {n} {_plural(unit)} of {item}. Each {unit} holds {per} {item}. {name} gives {eat} {item} to {other}. "
            f"How many {item} does {name} have left?",
            [
                f"{name} buys {n} * {per} = {total} {item}.",
                f"After giving away {eat}, {name} has {total} - {eat} = {total - eat} {item}.",
            ],
            total - eat,
        )
    if kind == 1:
        price, qty, paid = rng.randint(2, 15), rng.randint(2, 8), 0
        cost = price * qty
        paid = cost + rng.randint(1, 30)
        return MathProblem(
            f"{name} buys {qty} {item} at ${price} each and pays with ${paid}. How much change does {name} get?",
            [
                f"The {item} cost {qty} * {price} = ${cost}.",
                f"The change is {paid} - {cost} = ${paid - cost}.",
            ],
            paid - cost,
        )
    if kind == 2:
        speed, hours, extra = rng.randint(20, 70), rng.randint(2, 6), rng.randint(5, 40)
        vehicle = rng.choice(["train", "bus", "truck", "ferry", "car", "van"])
        dist = speed * hours
        return MathProblem(
            f"A {vehicle} travels at {speed} miles per hour for {hours} hours, then {extra} more miles. How far does it go?",
            [f"In {hours} hours it covers {speed} * {hours} = {dist} miles.", f"In total: {dist} + {extra} = {dist + extra} miles."],
            dist + extra,
        )
    if kind == 3:
        age, diff, years = rng.randint(5, 30), rng.randint(2, 25), rng.randint(2, 15)
        return MathProblem(
            f"{name} is {age} years old. {other} is {diff} years older than {name}. How old will {other} be in {years} years?",
            [
                f"{other} is {age} + {diff} = {age + diff} years old.",
                f"In {years} years {other} will be {age + diff} + {years} = {age + diff + years}.",
            ],
            age + diff + years,
        )
    if kind == 4:
        groups, per = rng.randint(2, 9), rng.randint(2, 12)
        total = groups * per
        return MathProblem(
            f"{name} shares {total} {item} equally among {groups} friends. How many {item} does each friend get?",
            [f"Each friend gets {total} / {groups} = {per} {item}."],
            per,
        )
    w, h, c = rng.randint(2, 20), rng.randint(2, 20), rng.randint(2, 9)
    place = rng.choice(["garden", "lawn", "field", "yard", "plot", "courtyard"])
    area = w * h
    return MathProblem(
        f"{name}'s {place} is {w} meters long and {h} meters wide. Seeds cost ${c} per square meter. "
        f"What do seeds for the {place} cost?",
        [f"The area is {w} * {h} = {area} square meters.", f"The seeds cost {area} * {c} = ${area * c}."],
        area * c,
    )


def math_problems(n: int, seed: int) -> list[MathProblem]:
    rng = random.Random(seed)
    seen: set[str] = set()
    out: list[MathProblem] = []
    while len(out) < n:
        p = _problem(rng)
        if p.question not in seen:
            seen.add(p.question)
            out.append(p)
    return out


def split_math(cfg: BuiltinCorpusConfig) -> tuple[list[MathProblem], list[MathProblem]]:
    """Train problems, and held-out test problems sharing no 10-gram with any training problem.

    The test set is built the way benchmarks should be: a test problem whose wording overlaps the
    training text (same template, same names and numbers) is skipped, so that decontamination of the
    corpus removes exactly the pages that quote test problems and nothing else.
    """
    from infir.data.decontam import tokens

    train = math_problems(cfg.math_train, cfg.seed + 17)
    seen = {p.question for p in train}
    train_ngrams = set()
    for p in train:
        for text in (p.question, p.solution):
            t = tokens(text)
            train_ngrams.update(tuple(t[i : i + 10]) for i in range(len(t) - 9))
    rng = random.Random(cfg.seed + 31)
    test: list[MathProblem] = []
    for _ in range(200 * max(1, cfg.math_test)):
        if len(test) >= cfg.math_test:
            break
        p = _problem(rng)
        t = tokens(p.question + "\n" + p.solution)
        if p.question not in seen and not any(tuple(t[i : i + 10]) in train_ngrams for i in range(len(t) - 9)):
            seen.add(p.question)
            test.append(p)
    if len(test) < cfg.math_test:
        raise ValueError(f"could only build {len(test)} of {cfg.math_test} clean held-out problems")
    return train, test


def _worksheets(problems: list[MathProblem], per_page: int) -> Iterator[dict]:
    """Math pages of several solved problems each. Single templated problems would be near-duplicates
    of each other under 5-gram MinHash (same wording, other numbers), as they would be on the web."""
    for start in range(0, len(problems), per_page):
        page = problems[start : start + per_page]
        text = "\n\n".join(f"Problem {i + 1}. {p.question}\nSolution: {p.solution}" for i, p in enumerate(page))
        yield {"id": f"math/{start // per_page}", "text": text, "source": "generated-math",
               "metadata": {"domain": "math"}}


# --------------------------------------------------------------------------- stdlib text


def _python_excerpt(source: str, max_chars: int) -> str:
    """At most `max_chars` of a module, cut before a top-level statement so the excerpt still parses (a file
    cut mid-function is what the code rules drop as a syntax error); "" when no cut parses."""
    import ast

    if len(source) <= max_chars:
        return source
    lines = source.splitlines(keepends=True)
    cuts, size = [], 0
    for i, line in enumerate(lines):
        if size > max_chars:
            break
        if i and line[:1].isalpha():  # a line that starts a top-level statement
            cuts.append(i)
        size += len(line)
    for cut in reversed(cuts):
        text = "".join(lines[:cut])
        try:
            ast.parse(text)
        except SyntaxError:
            continue
        return text
    return ""


def _stdlib_code(cfg: BuiltinCorpusConfig, rng: random.Random, heldout: bool = False) -> Iterator[dict]:
    """Standard-library modules; `heldout` gives the next `heldout_code_files` ones (never trained on)."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in stdlib.glob("*.py") if not p.name.startswith("_"))
    random.Random(cfg.seed).shuffle(files)
    chosen = files[cfg.code_files : cfg.code_files + cfg.heldout_code_files] if heldout else files[: cfg.code_files]
    for path in chosen:
        text = _python_excerpt(path.read_text(encoding="utf-8", errors="replace"), cfg.max_code_chars)
        if not text:
            continue
        yield {
            "id": f"code/{path.name}",
            "text": text,
            "source": "stdlib-code",
            "metadata": {"domain": "code", "language": "python", "path": path.name},
        }


def _stdlib_docs(cfg: BuiltinCorpusConfig) -> Iterator[dict]:
    try:
        from pydoc_data.topics import topics
    except ImportError:  # some distributions strip pydoc_data
        topics = {}
    for name in sorted(topics):
        yield {
            "id": f"doc/topic/{name}",
            "text": topics[name].strip(),
            "source": "pydoc-topics",
            "metadata": {"domain": "web"},
        }
    count = 0
    for mod in sorted(pkgutil.iter_modules(), key=lambda m: m.name):
        if count >= cfg.doc_modules or mod.name.startswith("_") or mod.name in {"antigravity", "this"}:
            continue
        if not str(getattr(mod.module_finder, "path", "")).startswith(sysconfig.get_paths()["stdlib"]):
            continue
        try:
            doc = importlib.import_module(mod.name).__doc__
        except Exception:  # noqa: BLE001 - any module may fail to import on some platforms
            continue
        if doc and len(doc.split()) >= 20:
            count += 1
            yield {
                "id": f"doc/module/{mod.name}",
                "text": doc.strip(),
                "source": "stdlib-docstrings",
                "metadata": {"domain": "web"},
            }


_NAV = [
    "Home",
    "About us",
    "Contact",
    "Login",
    "Sign up",
    "Privacy policy",
    "Terms of use",
    "Cookies",
    "Careers",
    "Blog",
    "Shop",
    "Cart",
    "Help",
    "FAQ",
    "Sitemap",
    "Newsletter",
    "Follow us",
]


def _noise(
    docs: list[dict], cfg: BuiltinCorpusConfig, rng: random.Random, test: list[MathProblem]
) -> Iterator[dict]:
    prose = [d for d in docs if d["metadata"]["domain"] != "code"]
    for i, d in enumerate(rng.sample(docs, int(len(docs) * cfg.duplicate_fraction))):
        yield {**d, "id": f"noise/dup/{i}", "source": "crawl-duplicate"}
    for i, d in enumerate(rng.sample(prose, min(len(prose), int(len(docs) * cfg.near_duplicate_fraction)))):
        words = d["text"].split(" ")
        for _ in range(max(1, len(words) // 50)):
            words[rng.randrange(len(words))] = rng.choice(["the", "a", "this", "that"])
        yield {**d, "id": f"noise/near/{i}", "text": " ".join(words), "source": "crawl-near-duplicate"}
    for i in range(cfg.boilerplate_pages):
        lines = [" | ".join(rng.sample(_NAV, 6)) for _ in range(rng.randint(8, 20))]
        yield {
            "id": f"noise/nav/{i}",
            "text": "\n".join(lines),
            "source": "crawl-boilerplate",
            "metadata": {"domain": "web"},
        }
    for i in range(cfg.short_pages):
        yield {
            "id": f"noise/short/{i}",
            "text": rng.choice(["Click here.", "Loading...", "404 Not Found", "Subscribe now!"]),
            "source": "crawl-short",
            "metadata": {"domain": "web"},
        }
    for i, p in enumerate(test[: cfg.contaminated_pages]):
        yield {
            "id": f"noise/leak/{i}",
            "source": "crawl-leaked-benchmark",
            "metadata": {"domain": "math"},
            "text": "Homework help forum. A student asked the following question today and nobody answered yet: "
            f"{p.question} Please show your work. Thanks in advance to anyone who can help with this.",
        }


def build_corpus(cfg: BuiltinCorpusConfig, out_dir: Path) -> dict:
    """Write corpus.jsonl, math_train/test.jsonl and heldout.jsonl (NLL text) into out_dir; return counts."""
    rng = random.Random(cfg.seed)
    train, test = split_math(cfg)
    docs = list(_stdlib_code(cfg, rng)) + list(_stdlib_docs(cfg))
    docs += list(_worksheets(train, cfg.problems_per_page))
    docs += list(_noise(docs, cfg, rng, test))
    rng.shuffle(docs)
    out_dir.mkdir(parents=True, exist_ok=True)
    n = write_jsonl(out_dir / "corpus.jsonl", docs)
    write_jsonl(out_dir / "math_train.jsonl", ({"question": p.question, "answer": p.solution} for p in train))
    write_jsonl(out_dir / "math_test.jsonl", ({"question": p.question, "answer": p.solution} for p in test))
    heldout = list(_stdlib_code(cfg, rng, heldout=True)) + list(_worksheets(test, cfg.problems_per_page))
    write_jsonl(out_dir / "heldout.jsonl", ({"id": d["id"], "text": d["text"]} for d in heldout))
    by_source: dict[str, int] = {}
    for d in docs:
        by_source[d["source"]] = by_source.get(d["source"], 0) + 1
    return {
        "documents": n,
        "by_source": by_source,
        "math_train": len(train),
        "math_test": len(test),
        "bytes": sum(len(d["text"].encode()) for d in docs),
    }
