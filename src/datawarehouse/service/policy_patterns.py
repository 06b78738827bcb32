"""Wildcard patterns with IAM policy variables (pure code).

A policy string such as ``arn:aws:s3:::home/${aws:username}/*`` is compiled once, at parse time,
into tokens: literal text, ``*`` (any run of characters, ``/`` included, as in IAM), ``?`` (exactly
one character) and variables. Variables are substituted per request from the condition context and
their values are always *literal*: a user called ``a*`` must not gain a wildcard. The escapes
``${*}``, ``${?}`` and ``${$}`` stand for a literal ``*``, ``?`` and ``$``; ``${key, 'default'}``
gives a default for a missing key (IAM syntax). A variable whose key is missing (and has no
default) or has several values cannot be resolved: the pattern then matches nothing, as in IAM.

Policy variables exist only in policy language version ``2012-10-17``; in ``2008-10-17`` text
such as ``${aws:username}`` is literal, as AWS does (compile with ``variables=False``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from datawarehouse.errors import InvalidPolicy

# A condition context: lower-cased key -> the key's values (several for multi-valued keys).
Context = Mapping[str, tuple[str, ...]]

_VARIABLE: Final = re.compile(r"\$\{([^}]*)\}")
_VARIABLE_KEY: Final = re.compile(r"[A-Za-z0-9_.:/-]+")
_DEFAULT: Final = re.compile(r"\s*([^,\s]+)\s*,\s*'([^']*)'\s*")
_ESCAPES: Final = {"*": "*", "?": "?", "$": "$"}


@dataclass(frozen=True)
class Variable:
    key: str  # lower-cased: condition keys are case-insensitive
    default: str | None


class _Star:
    def __repr__(self) -> str:
        return "STAR"


class _Any1:
    def __repr__(self) -> str:
        return "QMARK"


STAR: Final = _Star()
QMARK: Final = _Any1()
Token = str | Variable | _Star | _Any1


@dataclass(frozen=True)
class Pattern:
    """A compiled policy string. ``text`` is the string as written (for messages)."""

    text: str
    tokens: tuple[Token, ...]

    @property
    def has_variables(self) -> bool:
        return any(isinstance(t, Variable) for t in self.tokens)

    def regex(self, context: Context, *, ignore_case: bool = False) -> re.Pattern[str] | None:
        """The wildcard regex for this request, or None when a variable cannot be resolved."""
        parts: list[str] = []
        for token in self.tokens:
            if token is STAR:
                parts.append(".*")
            elif token is QMARK:
                parts.append(".")
            elif isinstance(token, Variable):
                value = resolve(token, context)
                if value is None:
                    return None
                parts.append(re.escape(value))
            else:
                assert isinstance(token, str)
                parts.append(re.escape(token))
        return _compiled("".join(parts), ignore_case)

    def matches(self, value: str, context: Context, *, ignore_case: bool = False) -> bool:
        """Whether ``value`` matches the pattern with ``*``/``?`` as wildcards."""
        rx = self.regex(context, ignore_case=ignore_case)
        return rx is not None and rx.fullmatch(value) is not None

    def literal(self, context: Context) -> str | None:
        """The pattern as plain text (``*`` and ``?`` literal): for the ...Equals operators."""
        parts: list[str] = []
        for token in self.tokens:
            if token is STAR:
                parts.append("*")
            elif token is QMARK:
                parts.append("?")
            elif isinstance(token, Variable):
                value = resolve(token, context)
                if value is None:
                    return None
                parts.append(value)
            else:
                assert isinstance(token, str)
                parts.append(token)
        return "".join(parts)


@functools.lru_cache(maxsize=4096)
def _compiled(source: str, ignore_case: bool) -> re.Pattern[str]:
    return re.compile(source, re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def resolve(variable: Variable, context: Context) -> str | None:
    values = context.get(variable.key)
    if values is not None and len(values) == 1:
        return values[0]
    if not values and variable.default is not None:
        return variable.default
    return None


def _wildcards(text: str) -> list[Token]:
    tokens: list[Token] = []
    literal: list[str] = []
    for char in text:
        if char in "*?":
            if literal:
                tokens.append("".join(literal))
                literal = []
            tokens.append(STAR if char == "*" else QMARK)
        else:
            literal.append(char)
    if literal:
        tokens.append("".join(literal))
    return tokens


def compile_pattern(text: str, *, variables: bool, where: str) -> Pattern:
    """Compile ``text``; ``where`` names the statement and field for error messages."""
    if not variables:
        return Pattern(text, tuple(_wildcards(text)))
    tokens: list[Token] = []
    position = 0
    for found in _VARIABLE.finditer(text):
        tokens.extend(_wildcards(text[position : found.start()]))
        position = found.end()
        body = found.group(1)
        if body in _ESCAPES:
            tokens.append(_ESCAPES[body])
            continue
        with_default = _DEFAULT.fullmatch(body)
        key, default = (with_default.group(1), with_default.group(2)) if with_default else (body.strip(), None)
        if not _VARIABLE_KEY.fullmatch(key):
            raise InvalidPolicy(f"{where}: policy variable ${{{body}}} is not a valid condition key")
        tokens.append(Variable(key.lower(), default))
    tokens.extend(_wildcards(text[position:]))
    merged: list[Token] = []
    for token in tokens:  # join adjacent literals so regexes stay small and equality is simple
        if isinstance(token, str) and merged and isinstance(merged[-1], str):
            merged[-1] = merged[-1] + token
        else:
            merged.append(token)
    return Pattern(text, tuple(merged))


def wildcard_match(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    """Plain ``*``/``?`` matching without variables (action names): compiled once per pattern."""
    return _plain(pattern, ignore_case).fullmatch(value) is not None


@functools.lru_cache(maxsize=4096)
def _plain(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    rx = compile_pattern(pattern, variables=False, where="pattern").regex({}, ignore_case=ignore_case)
    assert rx is not None  # no variables, so always resolvable
    return rx
