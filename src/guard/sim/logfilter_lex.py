"""The tokenizer of the Logging query language, and its error messages with line and column.

Split from `guard.sim.logfilter` (the parser) to keep each module small. It knows the few
lexical quirks that matter: quoted strings with backslash escapes, quoted segments inside a
field path (`labels."k8s-pod/app"`), `-` as NOT only where a term starts (`-severity>=ERROR`)
while `status = -1` stays a number, and two-character operators (`=~ !~ != <= >=`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from guard.sim.faults import FakeCloudError

_OPS = ("=~", "!~", "!=", "<=", ">=", "=", "<", ">", ":")
_STOP = set(' \t\r\n()",=<>!:~')
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"'}


@dataclass(frozen=True, slots=True)
class Tok:
    """One token: kind is word, str, op, (, ), ",", not (a leading '-') or end."""

    kind: str
    text: str
    pos: int
    segments: list[str] = field(default_factory=list)  # a word's field-path segments


def _where(text: str, pos: int) -> tuple[int, int]:
    before = text[:pos]
    return before.count("\n") + 1, pos - (before.rfind("\n") + 1) + 1


def unparseable(text: str, tok: Tok, what: str = "syntax error") -> FakeCloudError:
    """INVALID_ARGUMENT in the shape Google uses for a filter it cannot parse."""
    line, column = _where(text, tok.pos)
    shown = "<end of filter>" if tok.kind == "end" else tok.text
    return FakeCloudError(
        "INVALID_ARGUMENT",
        f"Unparseable filter: {what} at line {line}, column {column}, token '{shown}'",
    )


def _string(text: str, start: int) -> tuple[str, int]:
    """The quoted string starting at `start` (a '"'), unescaped, and the index after it."""
    out: list[str] = []
    i = start + 1
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            # Unknown escapes keep their backslash, so a regex's `\d` or `\(` survives.
            out.append(_ESCAPES.get(text[i + 1], text[i : i + 2]))
            i += 2
            continue
        if ch == '"':
            return "".join(out), i + 1
        out.append(ch)
        i += 1
    raise unparseable(text, Tok("str", text[start:], start), "unterminated string")


def _word(text: str, start: int) -> tuple[Tok, int]:
    """A bare word / field path; quoted segments after a '.' are part of it."""
    segments: list[str] = []
    current: list[str] = []
    i = start
    while i < len(text):
        ch = text[i]
        if ch == '"' and i > start and text[i - 1] == ".":
            value, i = _string(text, i)
            current.append(value)
            continue
        if ch in _STOP:
            break
        if ch == ".":
            segments.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    segments.append("".join(current))
    return Tok("word", text[start:i], start, segments), i


def tokenize(text: str) -> list[Tok]:
    """The tokens of `text`, ending with an `end` token."""
    toks: list[Tok] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        if ch in "(),":
            toks.append(Tok(ch, ch, i))
            i += 1
            continue
        if ch == '"':
            value, end = _string(text, i)
            toks.append(Tok("str", value, i))
            i = end
            continue
        op = next((o for o in _OPS if text.startswith(o, i)), None)
        if op is not None:
            toks.append(Tok("op", op, i))
            i += len(op)
            continue
        if ch in "!~":
            raise unparseable(text, Tok("op", ch, i))
        after_op = bool(toks) and toks[-1].kind == "op"
        if ch == "-" and not after_op and i + 1 < len(text) and not text[i + 1].isspace():
            toks.append(Tok("not", "-", i))
            i += 1
            continue
        tok, i = _word(text, i)
        toks.append(tok)
    toks.append(Tok("end", "", len(text)))
    return toks
