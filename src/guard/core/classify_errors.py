"""Find the database error in a log text: its SQLSTATE, its primary message, the object named.

The classifier's verdict and the page both hinge on one fact pulled out of a traceback: which
PostgreSQL error the application hit. Drivers print it differently (psycopg names the class,
Django wraps it in `django.db.utils.ProgrammingError`, SQLAlchemy prefixes
`(psycopg.errors.X)`, PostgreSQL's own log says `ERROR:  …`, pgx appends `(SQLSTATE 42703)`),
so this module reads every form and reduces it to one `DbError`. The relation rule follows
docs/error-texts.md ("the first database object the primary message names, unquoted and
unqualified") so the fixture's labels compare one to one.

Every pattern is anchored or bounded (no nested quantifiers, messages capped) so a 1 MB line
costs linear time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from guard.core.classify_sqlstates import sqlstate_for_class

_MESSAGE_CAP = 4000  # a primary message longer than this is not one PostgreSQL wrote

#: Errors that mean "the application's queries no longer fit the schema".
SCHEMA_SQLSTATES = frozenset(
    {
        "42703",  # undefined_column
        "42P01",  # undefined_table
        "42883",  # undefined_function (and operator)
        "42804",  # datatype_mismatch
        "42704",  # undefined_object (type, index, constraint)
        "42702",  # ambiguous_column: a join broke when a table gained a same-named column
        "42725",  # ambiguous_function: a migration added an overload
        "42809",  # wrong_object_type: a table became a view
        "42846",  # cannot_coerce: a column changed type under a cast
        "428C9",  # generated_always: a column became generated
    }
)
# Connection, authentication, missing database, resources, shutdowns: infrastructure, never
# "the schema is wrong", even while a migration runner was connecting.
_INFRA_PREFIXES = ("08", "28", "3D", "53", "57P", "58")

# `Name: message` at the start of a line: Python's last traceback line, PostgreSQL's
# `ERROR:  …`, Java's `org.postgresql.util.PSQLException: …`. Possessive, so linear.
_EXCEPTION_LINE = re.compile(r"^[ \t]*+((?:[A-Za-z_]\w*+\.)*+[A-Za-z_]\w*+): ?+([^\n]*+)", re.M)
# PostgreSQL's secondary fields and log levels look like exception lines; they are not.
_NOT_EXCEPTIONS = frozenset(
    {"DETAIL", "HINT", "CONTEXT", "STATEMENT", "LOCATION", "QUERY", "WHERE", "NOTICE"}
    | {"WARNING", "LOG", "INFO", "DEBUG", "Note", "Warning"}
)
_DB_NAMESPACES = ("psycopg", "psycopg2", "asyncpg", "sqlalchemy", "django", "pg8000")
# SQLAlchemy's "(psycopg.errors.UndefinedColumn) …" and its asyncpg dialect's
# "<class 'asyncpg.exceptions.UndefinedColumnError'>: …".
_WRAPPED = re.compile(r"\(([\w.]{1,200})\) |<class '([\w.]{1,200})'>: ")
_SEVERITY = re.compile(r"(?:ERROR|FATAL|PANIC|error|fatal):[ \t]*+")
_EXPLICIT = re.compile(
    r"(?:sqlstate|SQLSTATE|SqlState|sql_state|pgcode|pg_code)[\"'\s:=\[(]{0,4}([0-9A-Z]{5})\b"
)
# Substrings each regex needs, tested first: `in` runs at C speed where an alternation
# regex tries every position of a 10 kB traceback.
_EXPLICIT_WORDS = ("qlstate", "QLSTATE", "qlState", "ql_state", "pgcode", "pg_code")
_BOOKKEEPING = re.compile(r"migrat|alembic_version|schema_version|goose_db_version")

_Q = r'"?([^"\s(]{1,200})"?'  # an identifier, quoted or not: `"title"`, `l.video_url`
# (pattern matched at the start of the primary message, the SQLSTATE it implies); group 1,
# when present, is the object the relation rule picks.
_MESSAGES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), code)
    for pattern, code in (
        (rf"column {_Q} of relation \S+ does not exist", "42703"),
        (rf"column {_Q} does not exist", "42703"),
        (rf"column {_Q} of relation \S+ already exists", "42701"),
        (rf"column {_Q} of relation \S+ contains null values", "23502"),
        (rf"null value in column {_Q}", "23502"),
        (rf"column {_Q} is of type .{{1,200}} but expression is of type", "42804"),
        (rf"column {_Q} cannot be cast automatically to type", "42804"),
        (rf"column (?:reference )?{_Q} is ambiguous", "42702"),
        (rf"relation {_Q} does not exist", "42P01"),
        (rf"relation {_Q} already exists", "42P07"),
        (rf"(?:insert or update|update or delete) on table {_Q} violates foreign key", "23503"),
        (r"function ([^\s(]{1,200})\([^)\n]{0,500}\) does not exist", "42883"),
        (r"operator does not exist", "42883"),
        (rf"type {_Q} does not exist", "42704"),
        (
            rf"(?:index|constraint|sequence|trigger|view) {_Q} (?:of relation \S+ )?does not exi",
            "42704",
        ),
        (rf"schema {_Q} does not exist", "3F000"),
        (rf"duplicate key value violates unique constraint {_Q}", "23505"),
        (rf"could not create unique index {_Q}", "23505"),
        (rf"check constraint {_Q} of relation \S+ is violated by some row", "23514"),
        (rf"new row for relation \S+ violates check constraint {_Q}", "23514"),
        (rf"cannot drop (?:materialized view|[a-z]+) {_Q} (?:of \w+ \S+ )?because other", "2BP01"),
        (rf"cannot insert a non-DEFAULT value into column {_Q}", "428C9"),
        (r"cannot cast type", "42846"),
        (r"canceling statement due to lock timeout", "55P03"),
        (r"could not obtain lock", "55P03"),
        (r"canceling statement due to statement timeout", "57014"),
        (r"deadlock detected", "40P01"),
        (r"could not serialize access", "40001"),
        (r"INSERT has more (?:expressions than target|target columns than)", "42601"),
        (r"syntax error at or near", "42601"),
        (r"cached plan must not change result type", "0A000"),
        (r"[A-Z ]{1,60} cannot run inside a transaction block", "25001"),
        (r"invalid input syntax for type (?:date|time|timestamp|interval)", "22007"),
        (r"invalid input (?:syntax for type|value for enum)", "22P02"),
    )
)
# 42601 and 0A000 are too broad to be "schema" by code; these messages are.
_SCHEMA_MESSAGES = re.compile(
    r"INSERT has more|cached plan must not change result type|cached statement plan is invalid"
)
# The same messages anywhere in a line, for logs that print no exception class at all
# (`… ERROR app.db: query failed: relation "x" does not exist`).
_LOOSE = re.compile(
    r'(?:column|relation|type) "?[^"\s]{1,200}"? does not exist|'
    r"function [^\s(]{1,200}\([^)\n]{0,500}\) does not|"
    r"operator does not exist|is of type [^\n]{1,200} but expression|cached plan must not|"
    r"INSERT has more (?:expressions|target)"
)


_LOOSE_WORDS = ("does not exist", "is of type", "cached plan", "INSERT has")


@dataclass(frozen=True, slots=True)
class DbError:
    """The database error a text reports, reduced to what the rules and the page need."""

    sqlstate: str | None
    relation: str | None
    message: str  # the primary message: the exception's first line, class prefixes removed
    schema: bool  # the queries no longer fit the schema (undefined column, table, ...)
    infrastructure: bool  # connection, auth, resources: not the schema's fault
    bookkeeping: bool  # a unique violation on the migration tool's own table: runners racing


def _unqualified(name: str) -> str:
    return name.rpartition(".")[2].strip('"')


def message_facts(message: str) -> tuple[str | None, str | None]:
    """The SQLSTATE a PostgreSQL primary message implies and the object it names."""
    for pattern, code in _MESSAGES:
        found = pattern.match(message)
        if found:
            named = found.group(1) if pattern.groups else None
            return code, _unqualified(named) if named else None
    return None, None


def _is_driver(name: str) -> bool:
    return name.partition(".")[0] in _DB_NAMESPACES


def _error(sqlstate: str | None, relation: str | None, message: str) -> DbError:
    return DbError(
        sqlstate=sqlstate,
        relation=relation,
        message=message,
        schema=sqlstate in SCHEMA_SQLSTATES or bool(_SCHEMA_MESSAGES.match(message)),
        infrastructure=sqlstate is not None and sqlstate.startswith(_INFRA_PREFIXES),
        bookkeeping=sqlstate == "23505" and bool(_BOOKKEEPING.search(message)),
    )


def read_exception(name: str, message: str) -> DbError | None:
    """The database error in one `Class: message` pair, or None if it is not one."""
    inner = name
    text = message.strip()[:_MESSAGE_CAP]
    for _ in range(3):  # SQLAlchemy over asyncpg wraps twice
        wrapped = _WRAPPED.match(text)
        if not wrapped:
            break
        inner = wrapped.group(1) or wrapped.group(2)
        text = text[wrapped.end() :]
    severity = _SEVERITY.match(text)
    if severity:
        text = text[severity.end() :]
    by_class = sqlstate_for_class(inner)
    by_message, relation = message_facts(text)
    sqlstate = by_class or by_message
    if sqlstate is None and not (_is_driver(inner) or _is_driver(name)):
        return None
    return _error(sqlstate, relation, text)


def find_db_error(text: str, leads: tuple[str, ...] = ()) -> DbError | None:
    """The database error `text` reports: the first one that carries a SQLSTATE.

    `leads` are messages the caller already isolated (a runner's "… failed: <message>"),
    read before the exception lines. A driver error without SQLSTATE (connection failures
    in psycopg, client-side errors) is returned only when nothing better is found.
    """
    fallback: DbError | None = None
    candidates = [("", lead) for lead in leads]
    candidates += [
        (m.group(1), m.group(2))
        for m in _EXCEPTION_LINE.finditer(text)
        if m.group(1) not in _NOT_EXCEPTIONS
    ]
    for name, message in candidates:
        found = read_exception(name, message) if name else _lead(message)
        if found is None:
            continue
        if found.sqlstate is not None:
            return found
        fallback = fallback or found
    explicit = _EXPLICIT.search(text) if _any_in(text, _EXPLICIT_WORDS) else None
    if explicit:
        base = fallback or _error(None, None, "")
        return _error(explicit.group(1), base.relation, base.message)
    if fallback is None and _any_in(text, _LOOSE_WORDS):
        loose = _LOOSE.search(text)
        if loose:
            return _lead(text[loose.start() : loose.start() + _MESSAGE_CAP].partition("\n")[0])
    return fallback


def _any_in(text: str, words: tuple[str, ...]) -> bool:
    for word in words:  # noqa: SIM110 - a loop beats any(<generator>) here
        if word in text:
            return True
    return False


def _lead(message: str) -> DbError | None:
    text = message.strip()[:_MESSAGE_CAP]
    wrapped = _WRAPPED.match(text)
    if wrapped:
        return read_exception(wrapped.group(1) or wrapped.group(2), text)
    sqlstate, relation = message_facts(text)
    return None if sqlstate is None else _error(sqlstate, relation, text)
