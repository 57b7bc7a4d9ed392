"""Load a configuration file and turn every problem into `file:line: field: what`.

`guard check` and `guard run` both go through `load_config`, so a bad config fails the same
way everywhere: all problems at once, each naming the file (or the environment variable),
the field path and what is wrong, and the caller exits 2.
"""

from __future__ import annotations

import difflib
import os
import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from guard.config.models import GuardConfig
from guard.config.yamlfile import Problem, YamlDocument, key_location, load_documents

ENV_PREFIX = "GUARD_"
_SECRET_HINTS = ("url", "token", "password", "secret_value", "key")


class ConfigError(Exception):
    """The configuration (or rule set) has problems; `problems` lists every one."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def load_config(path: Path) -> GuardConfig:
    """The validated configuration in `path` with `GUARD_` environment overrides applied."""
    docs, problems = load_documents(path)
    if problems:
        raise ConfigError(problems)
    if len(docs) != 1 or not isinstance(docs[0].data, dict):
        kind = "several YAML documents" if len(docs) > 1 else "no mapping at the top"
        raise ConfigError([Problem(str(path), "", f"expected one YAML mapping, found {kind}")])
    doc = docs[0]
    try:
        return GuardConfig(**doc.data)
    except ValidationError as err:
        raise ConfigError(validation_problems(err, doc, GuardConfig, env=os.environ)) from None


def validation_problems(
    err: ValidationError,
    doc: YamlDocument,
    model: type[BaseModel],
    *,
    env: Mapping[str, str] | None = None,
) -> list[Problem]:
    """One `Problem` per pydantic error, located in the file (or the environment)."""
    problems = []
    for e in err.errors(include_url=False):
        loc: tuple[str | int, ...] = tuple(e["loc"])
        problems.append(_problem(e, loc, doc, model, env or {}))
    return problems


def _problem(
    e: Any,
    loc: tuple[str | int, ...],
    doc: YamlDocument,
    model: type[BaseModel],
    env: Mapping[str, str],
) -> Problem:
    dotted = ".".join(str(p) for p in loc)
    kind = e["type"]
    if kind == "extra_forbidden":
        message = "unknown key" + _suggestion(model, loc)
        where = key_location(doc, loc)
    elif kind == "missing":
        message = "required field is missing"
        where = doc.locate(loc[:-1])
    else:
        message = e["msg"]
        if not any(h in dotted.lower() for h in _SECRET_HINTS) and "input" in e:
            shown = repr(e["input"])
            message += f" (got {shown[:60] + '...' if len(shown) > 60 else shown})"
        where = doc.locate(loc)
    if not doc.has(loc) and kind != "missing":
        var = ENV_PREFIX + "__".join(str(p) for p in loc).upper()
        if any(k.upper() == var for k in env):
            return Problem("environment", var, message)
    if where is None:
        return Problem(doc.file, dotted, message)
    return Problem(doc.file, dotted, message, where[0], where[1])


def _suggestion(model: type[BaseModel], loc: tuple[str | int, ...]) -> str:
    """' (did you mean 'x'?)' when the unknown key is close to a real one."""
    allowed = _fields_at(model, loc[:-1])
    close = difflib.get_close_matches(str(loc[-1]), allowed, n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]!r}?)"
    if allowed:
        return f" (allowed: {', '.join(sorted(allowed))})"
    return ""


def _fields_at(model: type[BaseModel], loc: Sequence[str | int]) -> list[str]:
    """The field names of the model found by walking `loc` through `model`'s annotations."""
    current: Any = model
    steps = list(loc)
    while steps:
        current = _unwrap_optional(current)
        origin = get_origin(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(steps.pop(0)))
            if field is None:
                return []
            current = field.annotation
        elif origin in (dict, Mapping):
            steps.pop(0)
            current = get_args(current)[1]
        elif origin in (list, tuple, Sequence):
            steps.pop(0)
            current = get_args(current)[0]
        else:
            return []
    current = _unwrap_optional(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _unwrap_optional(tp: Any) -> Any:
    while get_origin(tp) is not None and str(get_origin(tp)) == "typing.Annotated":
        tp = get_args(tp)[0]
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp
