"""The Cloud Monitoring filter language, as far as ListTimeSeries callers use it.

The fake's ListTimeSeries must reject the filters Google rejects and select the series Google
selects, or the guard's one-call-per-project metrics query could pass here and fail in
production. This module parses a filter such as

    metric.type = "run.googleapis.com/request_count" AND resource.type = "cloud_run_revision"
    AND resource.labels.service_name = one_of("api", "worker") AND NOT metric.labels.route:"x"

into a predicate over one series' labels, and pulls out the single metric type Google requires.

Modelled: selectors `metric.type`, `resource.type`, `project`, `resource.labels.K`,
`metric.labels.K` (and Google's singular `resource.label.K` / `metric.label.K`); operators `=`,
`!=`, `:` (has substring); right-hand sides that are quoted or bare strings or the functions
`starts_with`, `ends_with`, `has_substring`, `one_of`, `monitoring.regex.full_match`; `AND`,
`OR`, `NOT` (upper case) with parentheses, NOT binding tightest, then AND, then OR (the usual
order; Google's documentation does not state it for Monitoring). Not modelled: `metadata.*`,
`group.id`, numeric label comparisons (`<`, `>`). Error texts follow Google's
`Field filter had an invalid value of "...": ...` shape; the reasons are our wording.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from guard.sim.faults import FakeCloudError

_TOKEN = re.compile(
    r"""\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<op>!=|>=|<=|[=:<>(),])|(?P<word>[^\s"=:<>(),!]+))"""
)
_FUNCTIONS = {"starts_with", "ends_with", "has_substring", "one_of", "monitoring.regex.full_match"}
_UNESCAPE = re.compile(r"\\(.)")


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str  # "str", "op", "word", "end"
    text: str
    pos: int


@dataclass(frozen=True, slots=True)
class _Cmp:
    selector: str
    op: str
    test: Callable[[str], bool]
    literal: str | None  # the plain string on the right, when there is one


@dataclass(frozen=True, slots=True)
class _Bool:
    op: str  # "AND", "OR", "NOT"
    args: tuple[_Node, ...]


_Node = _Cmp | _Bool


def _error(text: str, reason: str) -> FakeCloudError:
    return FakeCloudError(
        "INVALID_ARGUMENT", f'Field filter had an invalid value of "{text}": {reason}'
    )


def _tokenize(text: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            if text[pos:].strip():
                raise _error(text, f"syntax error at position {pos + 1}")
            break
        kind = m.lastgroup or "word"
        tokens.append(_Tok(kind, m.group(kind), m.start(kind)))
        pos = m.end()
    tokens.append(_Tok("end", "", len(text)))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokenize(text)
        self.i = 0

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self, kind: str | None = None, text: str | None = None) -> _Tok:
        tok = self.peek()
        if (kind and tok.kind != kind) or (text is not None and tok.text != text):
            what = "end of filter" if tok.kind == "end" else f"'{tok.text}'"
            raise _error(self.text, f"syntax error at position {tok.pos + 1}: unexpected {what}")
        self.i += 1
        return tok

    def parse(self) -> _Node:
        node = self.or_()
        self.take("end")
        return node

    def or_(self) -> _Node:
        args = [self.and_()]
        while self.peek().text == "OR":
            self.take()
            args.append(self.and_())
        return args[0] if len(args) == 1 else _Bool("OR", tuple(args))

    def and_(self) -> _Node:
        args = [self.not_()]
        while self.peek().kind != "end" and self.peek().text not in (")", "OR"):
            if self.peek().text == "AND":
                self.take()
            args.append(self.not_())
        return args[0] if len(args) == 1 else _Bool("AND", tuple(args))

    def not_(self) -> _Node:
        if self.peek().text == "NOT":
            self.take()
            return _Bool("NOT", (self.not_(),))
        if self.peek().text == "(":
            self.take()
            node = self.or_()
            self.take("op", ")")
            return node
        return self.comparison()

    def comparison(self) -> _Node:
        selector = self.take("word").text
        if not _valid_selector(selector):
            raise _error(self.text, f"unknown selector {selector}")
        op = self.peek()
        if op.text not in ("=", "!=", ":"):
            self.take("op", "=")
        self.take()
        test, literal = self.value()
        if op.text == ":":
            needle = (literal or "").lower()
            test = (lambda v: needle in v.lower()) if literal is not None else test
        elif op.text == "!=":
            inner = test
            test = lambda v: not inner(v)  # noqa: E731
        return _Cmp(selector, op.text, test, literal if op.text == "=" else None)

    def value(self) -> tuple[Callable[[str], bool], str | None]:
        tok = self.take()
        if tok.kind == "str":
            s = _UNESCAPE.sub(r"\1", tok.text[1:-1])
            return (lambda v: v == s), s
        if tok.kind != "word":
            raise _error(self.text, f"syntax error at position {tok.pos + 1}: expected a value")
        if tok.text not in _FUNCTIONS or self.peek().text != "(":
            return (lambda v: v == tok.text), tok.text
        self.take()
        args: list[str] = []
        while True:
            arg = self.take()
            if arg.kind not in ("str", "word"):
                raise _error(self.text, f"syntax error at position {arg.pos + 1}")
            args.append(_UNESCAPE.sub(r"\1", arg.text[1:-1]) if arg.kind == "str" else arg.text)
            if self.take("op").text == ")":
                break
        return _function(self.text, tok.text, args), None


def _function(text: str, name: str, args: list[str]) -> Callable[[str], bool]:
    if name == "one_of":
        options = frozenset(args)
        return lambda v: v in options
    if len(args) != 1:
        raise _error(text, f"{name} takes exactly one argument")
    (arg,) = args
    if name == "starts_with":
        return lambda v: v.startswith(arg)
    if name == "ends_with":
        return lambda v: v.endswith(arg)
    if name == "has_substring":
        return lambda v: arg in v
    try:
        pattern = re.compile(arg)
    except re.error as err:
        raise _error(text, f"invalid regular expression: {err}") from None
    return lambda v: pattern.fullmatch(v) is not None


def _valid_selector(selector: str) -> bool:
    if selector in ("metric.type", "resource.type", "project"):
        return True
    head, _, key = selector.partition(".")
    kind, _, label = key.partition(".")
    return head in ("metric", "resource") and kind in ("label", "labels") and bool(label)


@dataclass(frozen=True, slots=True)
class MetricFilter:
    """A parsed ListTimeSeries filter: the metric type it names and a series predicate."""

    metric_type: str
    _root: _Node

    def matches(
        self,
        *,
        project: str,
        resource_type: str,
        resource_labels: Mapping[str, str],
        metric_labels: Mapping[str, str],
    ) -> bool:
        """Whether a series of `metric_type` with these labels is selected."""

        def lookup(selector: str) -> str | None:
            if selector == "metric.type":
                return self.metric_type
            if selector == "resource.type":
                return resource_type
            if selector == "project":
                return project
            head, _, rest = selector.partition(".")
            label = rest.partition(".")[2]
            return (resource_labels if head == "resource" else metric_labels).get(label)

        def ev(node: _Node) -> bool:
            if isinstance(node, _Cmp):
                value = lookup(node.selector)
                # A missing label equals nothing; `!=` on a missing label holds.
                return node.op == "!=" if value is None else node.test(value)
            if node.op == "NOT":
                return not ev(node.args[0])
            if node.op == "AND":
                return all(ev(a) for a in node.args)
            return any(ev(a) for a in node.args)

        return ev(self._root)


def parse_metric_filter(text: str) -> MetricFilter:
    """Parse a ListTimeSeries filter; FakeCloudError(INVALID_ARGUMENT) as Google would."""
    if not text.strip():
        raise _error(text, "A filter must specify a metric type.")
    root = _Parser(text).parse()
    top = root.args if isinstance(root, _Bool) and root.op == "AND" else (root,)
    types = [n for n in top if isinstance(n, _Cmp) and n.selector == "metric.type"]

    def nested(node: _Node) -> int:
        if isinstance(node, _Cmp):
            return int(node.selector == "metric.type")
        return sum(nested(a) for a in node.args)

    if nested(root) != len(types) or len(types) != 1:
        raise _error(text, "The filter must specify exactly one metric type, joined by AND.")
    (cmp,) = types
    if cmp.op != "=" or cmp.literal is None:
        raise _error(text, "The metric type must be compared with = to a single string.")
    return MetricFilter(cmp.literal, root)
