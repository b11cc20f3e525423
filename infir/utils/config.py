"""The one config loader: every command and the recipe read YAML through here, with the same error messages.

    load_config(TrainConfig, "recipes/infir-1b.yaml", section="pretrain", overrides=["optimizer.lr=3e-4"])

- a file may be the config itself, or a document (a recipe) holding it under `section`;
- `overlays` are YAML files deep-merged over the file in order (a miniature overlay changes sizes and paths);
- `overrides` are `key.path=value` strings (`--set`), the value parsed as YAML, applied last;
- errors name the file, every bad field (dotted path) and what was expected, in one `ConfigError`.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names each bad field and what was expected.

    The `infir` command reports it the same way for every subcommand (the message, exit code 2, no traceback).
    """


def describe(err: ValidationError, source: str, prefix: str = "") -> str:
    lines = [f"invalid {source}:"]
    for e in err.errors():
        where = ".".join(str(p) for p in (prefix.split(".") if prefix else []) + list(e["loc"])) or "(top level)"
        got = e.get("input")
        shown = "" if isinstance(got, dict) or e["type"] == "missing" else f" (got {got!r})"
        msg = e["msg"].removeprefix("Value error, ")
        lines.append(f"  - {where}: {msg}{shown}")
    return "\n".join(lines)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping from a file; a missing file, bad YAML or a non-mapping is a ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"invalid {path}: not valid YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"invalid {path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def deep_merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """`overlay` over `base`: mappings merge key by key, anything else (lists too) replaces; `null` removes."""
    out = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """`key.path=value` strings (value parsed as YAML) set into a copy of `data`; a number indexes a list
    (`stages.2.optimizer.lr=1e-3`)."""
    out = copy.deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value (e.g. optimizer.lr=3e-4), got {item!r}")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML: {e}") from None
        node: Any = out
        *parents, leaf = key.strip().split(".")
        for i, p in enumerate(parents):
            where = ".".join(parents[: i + 1])
            if isinstance(node, list):
                if not p.isdigit() or int(p) >= len(node):
                    raise ConfigError(f"--set {item!r}: {where} is not an item of a list of {len(node)}")
                node = node[int(p)]
                continue
            if node.get(p) is None:
                node[p] = {}
            if not isinstance(node[p], (dict, list)):
                raise ConfigError(f"--set {item!r}: {where} is not a mapping")
            node = node[p]
        if isinstance(node, list):
            if not leaf.isdigit() or int(leaf) >= len(node):
                raise ConfigError(f"--set {item!r}: {leaf} is not an item of a list of {len(node)}")
            node[int(leaf)] = value
        else:
            node[leaf] = value
    return out


def validate(model: type[M], data: dict[str, Any], source: str, prefix: str = "") -> M:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(describe(e, source, prefix)) from None


def load_config(
    model: type[M],
    path: str | Path | None = None,
    *,
    section: str | None = None,
    overlays: Sequence[str | Path] = (),
    overrides: Sequence[str] = (),
    defaults: dict[str, Any] | None = None,
) -> M:
    """`model` from a YAML file (its `section` when the file has one), overlays and `--set` overrides.

    `defaults` are merged under the file (e.g. long-CoT SFT's lengths). Without a file, defaults + overrides.
    """
    data: dict[str, Any] = {}
    source = "config"
    if path is not None:
        doc = read_yaml(path)
        for extra in overlays:
            doc = deep_merge(doc, read_yaml(extra))
        source = f"config {path}"
        if section is not None and isinstance(doc.get(section), dict):
            data = doc[section]
            source = f"config {path} (section {section})"
        elif section is not None and section in doc and doc[section] is None:
            data = {}
        elif section is not None and "name" in doc:  # a recipe without this section
            raise ConfigError(f"{path}: the recipe has no '{section}:' section")
        else:
            data = doc
    data = deep_merge(defaults or {}, data)
    data = apply_overrides(data, overrides)
    return validate(model, data, source)


def moved_keys(data: Any, moves: dict[str, str]) -> None:
    """Raise a clear error for keys that moved (old key -> new dotted place) instead of 'extra field'."""
    if not isinstance(data, dict):
        return
    found = [k for k in moves if k in data]
    if found:
        hints = "; ".join(f"'{k}' is now '{moves[k]}'" for k in found)
        raise ValueError(f"settings that moved: {hints}")


def check_overrides(section: str, known: dict[str, Any], overrides: dict[str, dict], reserved: str) -> None:
    """Per-function keyword overrides (`{name: {param: value}}`) name known functions and their parameters only
    (`reserved`: the parameter the data goes in); a ValueError says which setting under `section` is wrong."""
    import inspect

    for name, values in overrides.items():
        if name not in known:
            raise ValueError(f"{section}: unknown filter {name!r} (known: {', '.join(known)})")
        params = inspect.signature(known[name]).parameters
        bad = [k for k in values if k not in params or k == reserved]
        if bad:
            raise ValueError(f"{section}.{name}: unknown setting(s) {bad}")
