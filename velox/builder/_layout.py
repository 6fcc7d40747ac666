"""Text layout for the generated strategy files: expressions, calls, docstrings and literals
laid out within 100 columns the way ruff formats them, so generated files pass ``ruff check``
(and the simple ones ``ruff format --check``) without ruff being installed."""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass

from velox.errors import ValidationError

#: The line length of generated files (the project's ruff setting).
WIDTH = 100


@dataclass(frozen=True)
class Expr:
    """An expression to lay out within :data:`WIDTH`: text, a call or an operator chain."""

    text: str | None = None
    call: str | None = None
    args: tuple[str, ...] = ()
    op: str | None = None
    items: tuple[Expr, ...] = ()
    parens: bool = False

    def parenthesised(self) -> Expr:
        return Expr(self.text, self.call, self.args, self.op, self.items, True)

    def inline(self) -> str:
        if self.text is not None:
            body = self.text
        elif self.call is not None:
            body = f"{self.call}({', '.join(self.args)})"
        else:
            body = f" {self.op} ".join(i.inline() for i in self.items)
        return f"({body})" if self.parens else body

    def lines(self, indent: int) -> list[str]:
        """Return the expression over lines starting at column ``indent`` (an operator chain
        too long for one line becomes a parenthesised block, one operand a line)."""
        pad = " " * indent
        one = self.inline()
        if indent + len(one) <= WIDTH or self.text is not None:
            return [pad + one]
        if self.call is not None:
            return call_lines(pad, self.call, self.args, "", indent)
        body = []
        for n, item in enumerate(self.items):
            lead = f"{self.op} " if n else ""
            text = item.inline()
            if indent + 4 + len(lead) + len(text) <= WIDTH or item.text is not None:
                body.append(f"{pad}    {lead}{text}")
                continue
            sub = Expr(item.text, item.call, item.args, item.op, item.items, False).lines(
                indent + 4
            )
            body.append(f"{pad}    {lead}{sub[0].lstrip()}")
            body += sub[1:]
        return [f"{pad}(", *body, f"{pad})"]


def assign(prefix: str, expr: Expr) -> list[str]:
    """Return ``prefix + expr`` laid out within :data:`WIDTH` (exploded in parentheses)."""
    one = expr.inline()
    if len(prefix) + len(one) <= WIDTH:
        return [prefix + one]
    indent = len(prefix) - len(prefix.lstrip())
    if expr.call is not None and not expr.parens:
        return call_lines(prefix, expr.call, expr.args, "", indent)
    lines = Expr(expr.text, expr.call, expr.args, expr.op, expr.items, False).lines(indent)
    return [prefix + lines[0].lstrip(), *lines[1:]]


def call_lines(
    prefix: str,
    name: str,
    args: tuple[str, ...],
    suffix: str,
    indent: int,
    *,
    single_comma: bool = False,
) -> list[str]:
    """Return a call (or, with ``name=""``, a tuple) laid out as ruff formats it: on one line,
    else its arguments on one indented line, else one argument a line with a trailing comma."""
    comma = "," if single_comma and len(args) == 1 else ""
    one = f"{prefix}{name}({', '.join(args)}{comma}){suffix}"
    if len(one) <= WIDTH:
        return [one]
    pad = " " * indent
    joined = f"{pad}    {', '.join(args)}"
    if len(joined) <= WIDTH:
        return [f"{prefix}{name}(", joined, f"{pad}){suffix}"]
    return [f"{prefix}{name}(", *(f"{pad}    {a}," for a in args), f"{pad}){suffix}"]


def dict_lines(prefix: str, items: dict[str, str], indent: str) -> list[str]:
    one = prefix + "{" + ", ".join(f'"{k}": {v}' for k, v in items.items()) + "}"
    if len(one) <= WIDTH:
        return [one]
    return [prefix + "{", *(f'{indent}    "{k}": {v},' for k, v in items.items()), indent + "}"]


def import_key(name: str) -> tuple[int, str]:
    # isort's force-sort-within-sections order ruff uses: constants, classes, functions
    kind = 0 if name.isupper() else (1 if name[0].isupper() else 2)
    return (kind, name)


def doc_safe(text: str) -> str:
    return text.replace("\\", "/").replace('"""', "'''")


def bullet(text: str) -> list[str]:
    return textwrap.wrap(text, WIDTH, initial_indent="* ", subsequent_indent="  ")


def docstring_lines(text: str, indent: int) -> list[str]:
    pad = " " * indent
    one = f'{pad}"""{text}"""'
    if len(one) <= WIDTH:
        return [one]
    wrapped = textwrap.wrap(text, WIDTH - indent - 3)
    return [f'{pad}"""{wrapped[0]}', *(pad + w for w in wrapped[1:]), f'{pad}"""']


def literal(value: object, indent: int) -> str:
    """Return ``value`` (JSON-like data) as a Python literal laid out the way ruff formats it."""
    pad = " " * (indent + 4)
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [f"{pad}{json.dumps(k)}: {literal(v, indent + 4)}," for k, v in value.items()]
        return "{\n" + "\n".join(items) + "\n" + " " * indent + "}"
    if isinstance(value, (list, tuple)):
        if not value:
            return "[]"
        items = [f"{pad}{literal(v, indent + 4)}," for v in value]
        return "[\n" + "\n".join(items) + "\n" + " " * indent + "]"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)
    raise ValidationError(f"builder spec value {value!r} is not JSON-like data")
