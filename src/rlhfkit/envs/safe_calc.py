"""A calculator that only does arithmetic: the expression is parsed with `ast` and walked node by
node; numbers and + - * / // % ** (bounded exponent), unary minus/plus and parentheses are the
whole language. Nothing is ever passed to eval/exec, no name is looked up, no attribute or call is
followed, so `__import__('os')`, `(1).__class__` or a lambda is an error, not code that runs."""

from __future__ import annotations

import ast
import math
import operator
import re

MAX_EXPRESSION_CHARS = 200
MAX_EXPONENT = 64  # |b| in a ** b
MAX_MAGNITUDE = 1e15  # any intermediate result beyond this is refused (no huge ints are ever built)
MAX_DEPTH = 32  # nesting of the syntax tree

_BINARY = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}
_CALL = re.compile(r"calc\(")


class CalcError(ValueError):
    """The expression is not plain arithmetic, or its value is out of bounds."""


def _check(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CalcError("only numbers are allowed")
    if isinstance(value, float) and not math.isfinite(value) or abs(value) > MAX_MAGNITUDE:
        raise CalcError("result out of range")
    return value


def _walk(node: ast.AST, depth: int):
    if depth > MAX_DEPTH:
        raise CalcError("expression nested too deeply")
    if isinstance(node, ast.Constant):
        return _check(node.value)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _check(_UNARY[type(node.op)](_walk(node.operand, depth + 1)))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _walk(node.left, depth + 1), _walk(node.right, depth + 1)
        if isinstance(node.op, ast.Pow):
            if abs(right) > MAX_EXPONENT:
                raise CalcError(f"exponent beyond ±{MAX_EXPONENT}")
            if left == 0 and right < 0:
                raise CalcError("division by zero")
            # bound the result before computing it: |left|^right ≤ MAX_MAGNITUDE
            if abs(left) > 1 and right > 0 and right * math.log10(abs(left)) > math.log10(MAX_MAGNITUDE):
                raise CalcError("result out of range")
        if isinstance(node.op, (ast.Div, ast.FloorDiv, ast.Mod)) and right == 0:
            raise CalcError("division by zero")
        return _check(_BINARY[type(node.op)](left, right))
    raise CalcError(f"not allowed: {type(node).__name__}")


def safe_eval(expression: str) -> int | float:
    """The value of an arithmetic expression, or CalcError. Whole-number floats come back as int."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise CalcError(f"expression longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as err:
        raise CalcError("not an arithmetic expression") from err
    value = _walk(tree.body, 0)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return round(value, 6) if isinstance(value, float) else value


def find_calls(text: str) -> list[str]:
    """The expressions of every `calc(...)` in `text` (balanced parentheses; an unclosed call is
    returned up to the end of the text, and fails to evaluate)."""
    calls = []
    for match in _CALL.finditer(text):
        depth, start = 1, match.end()
        i = start
        while i < len(text) and depth:
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        calls.append(text[start : i - 1] if depth == 0 else text[start:])
    return calls
