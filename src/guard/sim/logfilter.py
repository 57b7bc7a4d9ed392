"""The Cloud Logging query language (a subset): parser and evaluator over LogEntry.

The guard selects its log evidence with Logging filters (entries.list and TailLogEntries). If
the fake matched more loosely or more strictly than Google, detection would pass here and
miss in production, so the fake parses and evaluates them as Google documents:

- comparisons `FIELD OP VALUE` with `= != < <= > >= : =~ !~`; `FIELD:*` tests presence;
  string comparisons ignore case; severities compare by number (DEFAULT 0 ... EMERGENCY 800);
  `timestamp`/`receiveTimestamp` compare as instants; numbers as numbers. A comparison on a
  missing field is false; `!=` and `!~` are the negations of `=` and `=~` (so they hold for
  a missing field).
- `=~`/`!~` search (not full-match) with Python's `re`, case-sensitive; Google uses RE2, which
  lacks backreferences and lookaround: a pattern that needs them works here but not there.
- `AND`, `OR`, `NOT` (upper case only; lower case words are search terms) and `-` before a
  term; juxtaposition is AND. As Google documents, NOT binds tightest, then OR, then AND:
  `a OR NOT b AND NOT c OR d` is `(a OR (NOT b)) AND ((NOT c) OR d)`.
- a value group after an operator: `resource.type = ("a" OR "b")`.
- a bare or quoted term is a global restriction: any field containing it (case-insensitive).
- functions `log_id("run.googleapis.com/requests")` and `SEARCH([field,] "text")` (token match).
- field paths with quoted segments (`labels."k8s-pod/app"`), camelCase or snake_case.
Parse errors are INVALID_ARGUMENT with the line and column, in Google's "Unparseable filter"
shape (the exact wording Google uses is not documented). Not modelled: `sample()`, `ip_in_net()`
and other functions (UNIMPLEMENTED), array indexing, `:` on whole messages by type.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from guard.sim import logdoc
from guard.sim.faults import FakeCloudError
from guard.sim.logfilter_lex import Tok, tokenize, unparseable

Predicate = Callable[[dict[str, Any]], bool]
_ORDER_OPS = ("=", "<", "<=", ">", ">=")
_KEYWORDS = ("AND", "OR", "NOT")
_WORD_SPLIT = re.compile(r"[^0-9A-Za-z]+")


@dataclass(frozen=True, slots=True)
class LogFilter:
    """A parsed filter; `matches(doc)` takes `guard.sim.logdoc.entry_doc(entry)`."""

    text: str
    _pred: Predicate

    def matches(self, doc: dict[str, Any]) -> bool:
        return self._pred(doc)


def parse_log_filter(text: str) -> LogFilter:
    """Parse a Logging query; FakeCloudError(INVALID_ARGUMENT) at the first error."""
    parser = _Parser(text, tokenize(text))
    if parser.peek().kind == "end":
        return LogFilter(text, lambda _doc: True)
    pred = parser.expr()
    parser.expect_end()
    return LogFilter(text, pred)


def _and(preds: list[Predicate]) -> Predicate:
    return preds[0] if len(preds) == 1 else (lambda d: all(p(d) for p in preds))


def _or(preds: list[Predicate]) -> Predicate:
    return preds[0] if len(preds) == 1 else (lambda d: any(p(d) for p in preds))


def _not(pred: Predicate) -> Predicate:
    return lambda d: not pred(d)


class _Parser:
    def __init__(self, text: str, toks: list[Tok]) -> None:
        self.text = text
        self.toks = toks
        self.i = 0

    def peek(self) -> Tok:
        return self.toks[self.i]

    def take(self) -> Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def fail(self, tok: Tok, what: str = "syntax error") -> FakeCloudError:
        return unparseable(self.text, tok, what)

    def expect(self, kind: str) -> Tok:
        if self.peek().kind != kind:
            raise self.fail(self.peek())
        return self.take()

    def expect_end(self) -> None:
        if self.peek().kind != "end":
            raise self.fail(self.peek())

    def _starts_term(self) -> bool:
        tok = self.peek()
        return tok.kind in ("word", "str", "(", "not") and not (
            tok.kind == "word" and tok.text == "OR"
        )

    # expr := orx { [AND] orx } ; orx := unary { OR unary } ; unary := NOT unary | primary
    def expr(self) -> Predicate:
        preds = [self.orx()]
        while True:
            if self.peek().kind == "word" and self.peek().text == "AND":
                self.take()
                preds.append(self.orx())
            elif self._starts_term() and not self._keyword("AND"):
                preds.append(self.orx())
            else:
                return _and(preds)

    def _keyword(self, word: str) -> bool:
        return self.peek().kind == "word" and self.peek().text == word

    def orx(self) -> Predicate:
        preds = [self.unary()]
        while self._keyword("OR"):
            self.take()
            preds.append(self.unary())
        return _or(preds)

    def unary(self) -> Predicate:
        if self.peek().kind == "not" or self._keyword("NOT"):
            self.take()
            return _not(self.unary())
        if self.peek().kind == "(":
            self.take()
            pred = self.expr()
            self.expect(")")
            return pred
        return self.term()

    def term(self) -> Predicate:
        tok = self.peek()
        if tok.kind == "str":
            self.take()
            return _global(tok.text)
        if tok.kind != "word" or tok.text in ("AND", "OR"):
            raise self.fail(tok)
        self.take()
        if self.peek().kind == "(" and len(tok.segments) == 1:
            return self.function(tok)
        if self.peek().kind != "op":
            return _global(tok.text)
        op = self.take()
        return self.values(tuple(tok.segments), op)

    def values(self, path: tuple[str, ...], op: Tok) -> Predicate:
        """A value, or a parenthesised group of values joined by AND / OR / NOT."""
        if self.peek().kind != "(":
            return self.value(path, op)
        self.take()

        def group() -> Predicate:
            preds = [alt()]
            while self.peek().kind != ")":
                if self._keyword("AND"):
                    self.take()
                preds.append(alt())
            return _and(preds)

        def alt() -> Predicate:
            preds = [single()]
            while self._keyword("OR"):
                self.take()
                preds.append(single())
            return _or(preds)

        def single() -> Predicate:
            if self.peek().kind == "not" or self._keyword("NOT"):
                self.take()
                return _not(single())
            return self.value(path, op)

        pred = group()
        self.expect(")")
        return pred

    def value(self, path: tuple[str, ...], op: Tok) -> Predicate:
        tok = self.take()
        if tok.kind not in ("word", "str") or (tok.kind == "word" and tok.text in _KEYWORDS):
            raise self.fail(tok)
        return _comparison(self, path, op, tok)

    def function(self, name: Tok) -> Predicate:
        self.expect("(")
        args: list[Tok] = []
        while self.peek().kind != ")":
            if args:
                self.expect(",")
            tok = self.take()
            if tok.kind not in ("word", "str"):
                raise self.fail(tok)
            args.append(tok)
        self.take()
        fname = name.text
        if fname == "log_id" and len(args) == 1:
            suffix = "/logs/" + urllib.parse.quote(args[0].text, safe="")
            return lambda d: str(d.get("logName", "")).lower().endswith(suffix.lower())
        if fname.upper() == "SEARCH" and len(args) in (1, 2):
            wanted = [w for w in _WORD_SPLIT.split(args[-1].text.lower()) if w]
            path = tuple(args[0].segments) if len(args) == 2 else None
            return lambda d: _search(d, path, wanted)
        raise FakeCloudError("UNIMPLEMENTED", f"the fake cloud does not model {fname}()")


def _comparison(parser: _Parser, path: tuple[str, ...], op_tok: Tok, tok: Tok) -> Predicate:
    op, value, field = op_tok.text, tok.text, path[-1]
    if op == ":" and value == "*" and tok.kind == "word":
        return lambda d: bool(logdoc.lookup(d, path))
    if op in ("=~", "!~"):
        try:
            pattern = re.compile(value)
        except re.error as err:
            raise parser.fail(tok, f"invalid regular expression ({err})") from None
        found: Predicate = lambda d: any(  # noqa: E731
            pattern.search(logdoc.search_text(v))
            for x in logdoc.lookup(d, path)
            for v in logdoc.leaves(x)
        )
        return found if op == "=~" else _not(found)
    if field in logdoc.TIME_FIELDS and op != ":" and logdoc.parse_time(value) is None:
        raise parser.fail(tok, "invalid timestamp")
    if field == "severity" and op != ":" and logdoc.severity_number(value) is None:
        raise parser.fail(tok, "invalid severity")
    if op == ":":
        return lambda d: any(logdoc.has(x, value) for x in logdoc.lookup(d, path))
    cmp = "=" if op == "!=" else op
    assert cmp in _ORDER_OPS
    equal: Predicate = lambda d: any(  # noqa: E731
        logdoc.compare(cmp, field, x, value) for x in logdoc.lookup(d, path)
    )
    return _not(equal) if op == "!=" else equal


def _global(term: str) -> Predicate:
    return lambda d: logdoc.has(d, term)


def _search(doc: dict[str, Any], path: tuple[str, ...] | None, wanted: list[str]) -> bool:
    values = [doc] if path is None else logdoc.lookup(doc, path)
    words: set[str] = set()
    for leaf in (leaf for v in values for leaf in logdoc.leaves(v)):
        words.update(w for w in _WORD_SPLIT.split(logdoc.search_text(leaf).lower()) if w)
    return all(w in words for w in wanted)
