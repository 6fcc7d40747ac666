"""The scanner's condition language: a checked subset of Python expressions over columns.

:func:`_compile` parses with :mod:`ast` and refuses every node outside the subset (see
``docs/scanner.md``); :func:`_evaluate` walks the checked tree over numpy arrays. Nothing is
passed to ``eval``/``exec``/``compile``.
"""

from __future__ import annotations

import ast
import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from velox.errors import ValidationError

if TYPE_CHECKING:
    from velox.scanner._columns import _Columns

#: Longest condition accepted, in characters (a parse of kilobytes of nesting is refused early).
MAX_CONDITION_LENGTH = 2_000

_ALLOWED = (
    "column names, numbers, comparisons (< <= > >= == !=, chained), and/or/not (or & | ~), "
    "+ - * /, unary minus and parentheses"
)


_COMPARE = {
    ast.Lt: np.less,
    ast.LtE: np.less_equal,
    ast.Gt: np.greater,
    ast.GtE: np.greater_equal,
    ast.Eq: np.equal,
    ast.NotEq: np.not_equal,
}
_ARITHMETIC = {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply, ast.Div: np.divide}
_REFUSED = {
    ast.Call: "function calls",
    ast.Attribute: "attribute access",
    ast.Subscript: "subscripts",
    ast.Lambda: "lambdas",
    ast.ListComp: "comprehensions",
    ast.SetComp: "comprehensions",
    ast.DictComp: "comprehensions",
    ast.GeneratorExp: "comprehensions",
    ast.NamedExpr: "assignments (:=)",
    ast.IfExp: "if/else expressions",
    ast.Starred: "starred expressions",
    ast.List: "lists",
    ast.Tuple: "tuples",
    ast.Dict: "dicts",
    ast.Set: "sets",
    ast.JoinedStr: "f-strings",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
    ast.Slice: "slices",
}


@dataclass(frozen=True, slots=True)
class _Expression:
    """A checked expression: its tree, the columns it names (in order) and its kind."""

    text: str
    tree: ast.expr
    names: tuple[str, ...]
    kind: str  # "bool" (a condition) or "number"


@functools.lru_cache(maxsize=512)
def _compile(text: str) -> _Expression:
    """Return ``text`` parsed and checked against the allowed subset (see the module doc)."""
    if not isinstance(text, str) or not text.strip():
        raise ValidationError("the scan condition is empty; e.g. 'rsi_14 < 30 and close > sma_200'")
    if len(text) > MAX_CONDITION_LENGTH:
        raise ValidationError(
            f"the scan condition is {len(text):,} characters long; the limit is "
            f"{MAX_CONDITION_LENGTH:,}"
        )
    source = text.strip()
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as exc:
        where = f" at column {exc.offset}" if exc.offset else ""
        raise ValidationError(
            f"cannot parse the condition {source!r}{where}: {exc.msg}; write e.g. "
            "'rsi_14 < 30 and close > sma_200'"
        ) from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise ValidationError(f"cannot parse the condition {source!r}: {exc}") from None
    names: list[str] = []
    kind = _check(tree.body, source, names)
    return _Expression(source, tree.body, tuple(dict.fromkeys(names)), kind)


def _refuse(node: ast.AST, source: str, what: str) -> ValidationError:
    segment = ast.get_source_segment(source, node) or type(node).__name__
    return ValidationError(
        f"a scan condition cannot contain {what} ({segment!r} in {source!r}); allowed: {_ALLOWED}"
    )


def _check(node: ast.AST, source: str, names: list[str]) -> str:
    """Return the kind ("bool" or "number") of ``node``, refusing anything outside the subset."""
    if isinstance(node, ast.Name):
        names.append(node.id)
        return "number"
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise _refuse(node, source, "constants other than numbers")
        if not math.isfinite(node.value):
            raise _refuse(node, source, "infinite numbers")
        return "number"
    if isinstance(node, ast.Compare):
        for part in (node.left, *node.comparators):
            _expect(part, "number", source, names, "a comparison compares numbers")
        for op in node.ops:
            if type(op) not in _COMPARE:
                raise _refuse(node, source, f"{type(op).__name__} comparisons")
        return "bool"
    if isinstance(node, ast.BoolOp):
        for part in node.values:
            _expect(part, "bool", source, names, "and/or join conditions")
        return "bool"
    if isinstance(node, ast.UnaryOp):
        if isinstance(node.op, ast.Not | ast.Invert):
            _expect(node.operand, "bool", source, names, "not/~ negates a condition")
            return "bool"
        if isinstance(node.op, ast.USub | ast.UAdd):
            _expect(node.operand, "number", source, names, "a sign applies to a number")
            return "number"
    if isinstance(node, ast.BinOp):
        if isinstance(node.op, ast.BitAnd | ast.BitOr):
            for part in (node.left, node.right):
                _expect(part, "bool", source, names, "& and | join conditions")
            return "bool"
        if type(node.op) in _ARITHMETIC:
            for part in (node.left, node.right):
                _expect(part, "number", source, names, "+ - * / work on numbers")
            return "number"
        raise _refuse(node, source, f"the operator {type(node.op).__name__}")
    raise _refuse(node, source, _REFUSED.get(type(node), f"{type(node).__name__} expressions"))


def _expect(node: ast.AST, kind: str, source: str, names: list[str], why: str) -> None:
    got = _check(node, source, names)
    if got != kind:
        segment = ast.get_source_segment(source, node) or "?"
        wanted = "a comparison such as 'rsi_14 < 30'" if kind == "bool" else "a number"
        raise ValidationError(
            f"{segment!r} in {source!r} is not {wanted}: {why}; allowed: {_ALLOWED}"
        )


def _evaluate(node: ast.expr, cols: _Columns) -> np.ndarray:
    """Return ``node`` evaluated over whole columns (numpy arrays, one value per bar)."""
    if isinstance(node, ast.Name):
        return cols[node.id]
    if isinstance(node, ast.Constant):
        return np.full(len(cols), float(node.value))
    if isinstance(node, ast.Compare):
        left = _evaluate(node.left, cols)
        result = None
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = _evaluate(comparator, cols)
            part = _COMPARE[type(op)](left, right)
            result = part if result is None else result & part
            left = right
        return result
    if isinstance(node, ast.BoolOp):
        parts = [_evaluate(value, cols) for value in node.values]
        combine = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
        return combine.reduce(parts)
    if isinstance(node, ast.UnaryOp):
        operand = _evaluate(node.operand, cols)
        if isinstance(node.op, ast.Not | ast.Invert):
            return ~operand
        return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.BinOp):
        left, right = _evaluate(node.left, cols), _evaluate(node.right, cols)
        if isinstance(node.op, ast.BitAnd):
            return left & right
        if isinstance(node.op, ast.BitOr):
            return left | right
        return _ARITHMETIC[type(node.op)](left, right)
    raise AssertionError(f"unchecked node {type(node).__name__}")  # _compile refused it
