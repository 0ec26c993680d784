"""The alert expression language: tokenised, parsed into a tree and evaluated, never `eval`.

    expression := or
    or         := and ("or" and)*
    and        := unary ("and" unary)*
    unary      := "not" unary | "(" or ")" | "any" "evaluation" "failed" | condition
    condition  := field ("==" | "!=" | "<" | "<=" | ">" | ">=") value
                | field ["not"] "in" "[" value ("," value)* "]"

Fields are paths of the call record (`latency.turn.p95`), checked against CallRecord when
parsed. A comparison with a null field is unknown, never true; `and`, `or` and `not` follow
three-valued logic, so `not (cost.total > 1)` is not true for a call without a cost either.
"""

import enum
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal, cast

from callwatch.alerts.fields import FIELDS, KIND_NAMES, Field, unknown
from callwatch.model.records import CallRecord

MAX_DEPTH = 32
ORDERING = ("<", "<=", ">", ">=")
KEYWORDS = ("and", "or", "not", "in")


class ExpressionError(ValueError):
    """What is wrong with an expression, and where (a 1-based column)."""

    def __init__(self, column: int, message: str) -> None:
        super().__init__(f"at {column}: {message}")
        self.column = column
        self.message = message


# Tokens


TokenKind = Literal["word", "number", "string", "op", "punct", "end"]


@dataclass(frozen=True)
class Token:
    kind: TokenKind
    text: str
    column: int

    def shown(self) -> str:
        return "end of expression" if self.kind == "end" else f"'{self.text}'"


_TOKEN = re.compile(
    r"(?P<space>\s+)"
    r"|(?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
    r"|(?P<word>[A-Za-z_][A-Za-z0-9_.\-]*)"
    r"|(?P<string>\"[^\"]*\"|'[^']*')"
    r"|(?P<op>==|!=|<=|>=|<|>|=)"
    r"|(?P<punct>[()\[\],])",
    re.ASCII,
)


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        column = position + 1
        if match is None:
            char = text[position]
            if char in "\"'":
                raise ExpressionError(column, f"unterminated string: close it with {char}")
            hint = " (join conditions with and / or)" if char in "&|" else ""
            raise ExpressionError(column, f"unexpected character {char!r}{hint}")
        kind = match.lastgroup
        if kind != "space":
            tokens.append(Token(cast(TokenKind, kind), match.group(), column))
        position = match.end()
    tokens.append(Token("end", "", len(text) + 1))
    return tokens


# The tree


@dataclass(frozen=True)
class Compare:
    path: str
    op: str
    value: float | str | bool


@dataclass(frozen=True)
class Member:
    path: str
    values: tuple[float | str, ...]
    negated: bool = False


@dataclass(frozen=True)
class AnyEvaluationFailed:
    pass


@dataclass(frozen=True)
class Not:
    item: "Node"


@dataclass(frozen=True)
class And:
    items: tuple["Node", ...]


@dataclass(frozen=True)
class Or:
    items: tuple["Node", ...]


Node = Compare | Member | AnyEvaluationFailed | Not | And | Or


# Parsing


@lru_cache(maxsize=1024)
def parse(text: str) -> Node:
    """The expression's tree; an ExpressionError names the column of the first broken part."""
    return _Parser(tokenize(text)).expression()


class _Parser:
    def __init__(self, tokens: Sequence[Token]) -> None:
        self.tokens = tokens
        self.at = 0

    @property
    def token(self) -> Token:
        return self.tokens[self.at]

    def _next(self) -> Token:
        token = self.tokens[self.at]
        self.at += 1
        return token

    def _is(self, keyword: str) -> bool:
        return self.token.kind == "word" and self.token.text.lower() == keyword

    def _fail(self, expected: str, token: Token | None = None) -> ExpressionError:
        token = token or self.token
        return ExpressionError(token.column, f"expected {expected}, found {token.shown()}")

    def expression(self) -> Node:
        node = self._or(depth=0)
        if self.token.kind != "end":
            raise self._fail("'and', 'or' or the end of the expression")
        return node

    def _or(self, depth: int) -> Node:
        items = [self._and(depth)]
        while self._is("or"):
            self._next()
            items.append(self._and(depth))
        return items[0] if len(items) == 1 else Or(tuple(items))

    def _and(self, depth: int) -> Node:
        items = [self._unary(depth)]
        while self._is("and"):
            self._next()
            items.append(self._unary(depth))
        return items[0] if len(items) == 1 else And(tuple(items))

    def _unary(self, depth: int) -> Node:
        if depth >= MAX_DEPTH:
            raise ExpressionError(
                self.token.column, f"nested too deeply (at most {MAX_DEPTH} levels)"
            )
        if self._is("not"):
            self._next()
            return Not(self._unary(depth + 1))
        if self.token.text == "(" and self.token.kind == "punct":
            opening = self._next()
            node = self._or(depth + 1)
            if self.token.text != ")":
                raise self._fail(f"')' to close the '(' at {opening.column}")
            self._next()
            return node
        if self._is("any"):
            return self._any_evaluation()
        return self._condition()

    def _any_evaluation(self) -> Node:
        self._next()
        if not (self._is("evaluation") or self._is("evaluations")):
            raise self._fail("'evaluation failed' after 'any'")
        self._next()
        if not self._is("failed"):
            raise self._fail("'failed' after 'any evaluation'")
        self._next()
        return AnyEvaluationFailed()

    def _condition(self) -> Node:
        token = self.token
        if token.kind != "word" or token.text.lower() in KEYWORDS:
            raise self._fail("a condition, e.g. latency.turn.p95 > 1500")
        self._next()
        path = token.text
        field = FIELDS.get(path)
        if field is None:
            raise ExpressionError(token.column, unknown(path))
        negated = self._is("not")
        if negated:
            self._next()
            if not self._is("in"):
                raise self._fail("'in' after 'not'")
        if self._is("in"):
            if field.kind == "bool":
                raise ExpressionError(
                    self.token.column, f"'{path}' is true or false: use == or !=, not 'in'"
                )
            self._next()
            return Member(path, self._list(field), negated)
        op = self.token
        if op.kind != "op":
            raise self._fail(f"an operator (==, !=, <, <=, >, >=, in) after '{path}'")
        self._next()
        if op.text in ORDERING and field.kind != "number":
            allowed = "==, != or in" if field.kind == "text" else "== or !="
            raise ExpressionError(
                op.column, f"'{path}' is {KIND_NAMES[field.kind]}: use {allowed}, not '{op.text}'"
            )
        value = self._value(field, f"after '{op.text}'")
        return Compare(path, "==" if op.text == "=" else op.text, value)

    def _list(self, field: Field) -> tuple[float | str, ...]:
        if self.token.text != "[":
            raise self._fail("'[' after 'in'")
        self._next()
        values: list[float | str] = []
        while True:
            value = self._value(field, "in the list")
            assert not isinstance(value, bool)  # `in` is refused for true/false fields
            values.append(value)
            if self.token.text == "]":
                self._next()
                return tuple(values)
            if self.token.text != ",":
                raise self._fail("',' or ']'")
            self._next()
            if self.token.text == "]":  # a trailing comma
                self._next()
                return tuple(values)

    def _value(self, field: Field, where: str) -> float | str | bool:
        token = self.token
        if field.kind == "number":
            if token.kind != "number":
                raise self._fail(f"a number {where}")
            if not math.isfinite(float(token.text)):
                raise ExpressionError(token.column, f"number out of range: '{token.text}'")
            self._next()
            return float(token.text)
        if field.kind == "bool":
            if token.kind != "word" or token.text.lower() not in ("true", "false"):
                raise self._fail(f"true or false {where}")
            self._next()
            return token.text.lower() == "true"
        if token.kind not in ("word", "number", "string") or token.text.lower() in KEYWORDS:
            raise self._fail(f"a value {where}")
        text = token.text[1:-1] if token.kind == "string" else token.text
        if field.choices and text not in field.choices:
            raise self._fail(f"one of {', '.join(field.choices)}")
        self._next()
        return text


# Evaluation

Truth = bool | None  # None: unknown (a null field)


def matches(node: Node, record: CallRecord | Mapping[str, Any]) -> bool:
    """Whether the record fires the expression: true, not merely unknown."""
    return evaluate(node, record) is True


def evaluate(node: Node, record: Any) -> Truth:
    if isinstance(node, Compare):
        return _compare(resolve(record, node.path), node.op, node.value)
    if isinstance(node, Member):
        value = _plain(resolve(record, node.path))
        return None if value is None else (value in node.values) != node.negated
    if isinstance(node, AnyEvaluationFailed):
        found = resolve(record, "evaluations") or []
        return any(resolve(item, "success") is False for item in found)
    if isinstance(node, Not):
        inner = evaluate(node.item, record)
        return None if inner is None else not inner
    results = [evaluate(item, record) for item in node.items]
    decisive = isinstance(node, Or)  # the value that settles it: True for or, False for and
    if decisive in results:
        return decisive
    return None if None in results else not decisive


def resolve(record: Any, path: str) -> Any:
    value = record
    for part in path.split("."):
        if value is None:
            return None
        value = value.get(part) if isinstance(value, Mapping) else getattr(value, part, None)
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return value


def _compare(actual: Any, op: str, expected: float | str | bool) -> Truth:
    actual = _plain(actual)
    if actual is None:
        return None
    if op == "==":
        return bool(actual == expected)
    if op == "!=":
        return bool(actual != expected)
    if not isinstance(actual, float) or not isinstance(expected, float):
        return None
    if op == "<":
        return actual < expected
    if op == "<=":
        return actual <= expected
    if op == ">":
        return actual > expected
    return actual >= expected


def numeric_terms(node: Node) -> list[Compare]:
    """The numeric comparisons in the expression (a lone one gives an alert its value)."""
    if isinstance(node, Compare):
        return [node] if isinstance(node.value, float) else []
    if isinstance(node, Not):
        return numeric_terms(node.item)
    if isinstance(node, And | Or):
        return [term for item in node.items for term in numeric_terms(item)]
    return []
