"""Score fusion: one serving signature returning a formula over the task outputs (see docs/methods.md).

A formula such as ``ctr * cvr ** 0.5`` or ``0.7 * ctr + 0.3 * cvr`` is parsed with Python's ``ast`` and
only these nodes are accepted: task names, numeric constants, ``+ - * / **``, unary minus (and plus) and
parentheses. Anything else (a call, an attribute, a comparison, a subscript, a string) is refused with an
error naming it; it is never evaluated with ``eval``. Each task in a formula must have one output per
example: binary (the positive-class probability) or regression heads; a multiclass head is refused.
"""

from __future__ import annotations

import ast
import difflib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

#: What a formula may contain, as the error messages list it.
ALLOWED = "task names, numeric constants, + - * / **, unary minus, parentheses"
#: The export's description of its fusion signature (read by the standalone checker).
FUSION_FILE = "fusion.json"

_BINARY: dict[type[ast.operator], str] = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.Pow: "**",
}


def _token(node: ast.AST) -> str:
    if isinstance(node, ast.BinOp):
        return type(node.op).__name__
    if isinstance(node, ast.UnaryOp):
        return type(node.op).__name__
    try:
        return ast.unparse(node)
    except Exception:  # pragma: no cover - unparse handles every node of a parsed expression
        return type(node).__name__


def parse_formula(formula: Any) -> ast.expr:
    """The formula's checked expression tree; raises ``ValueError`` naming the first refused token."""
    if not isinstance(formula, str) or not formula.strip():
        raise ValueError(f"Expected the fusion formula to be a non-empty string. Received: {formula!r}")
    try:
        tree = ast.parse(formula.strip(), mode="eval")
    except SyntaxError as error:
        raise ValueError(
            f"Fusion formula {formula!r} is not an expression: {error.msg}. Allowed: {ALLOWED}."
        ) from None
    _check(tree.body, formula)
    return tree.body


def _check(node: ast.AST, formula: str) -> None:
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        _check(node.left, formula)
        _check(node.right, formula)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        _check(node.operand, formula)
    elif isinstance(node, ast.Name) or (
        isinstance(node, ast.Constant)
        and isinstance(node.value, (int, float))
        and not isinstance(node.value, bool)
    ):
        pass
    else:
        raise ValueError(
            f"Fusion formula {formula!r} contains {_token(node)!r}, which is not allowed. Allowed: {ALLOWED}."
        )


def formula_tasks(formula: str) -> list[str]:
    """The task names a formula reads, in order of first use."""
    names: list[str] = []
    for node in ast.walk(parse_formula(formula)):
        if isinstance(node, ast.Name) and node.id not in names:
            names.append(node.id)
    return names


def check_tasks(formula: str, task_units: Mapping[str, int]) -> list[str]:
    """The formula's tasks, each checked to exist and to have one output per example (``task_units``:
    ``{task: output width}``); raises ``ValueError`` with a did-you-mean for an unknown name."""
    used = formula_tasks(formula)
    if not used:
        raise ValueError(
            f"Expected fusion formula {formula!r} to use at least one task. Expected task names: {sorted(task_units)}."
        )
    for name in used:
        if name not in task_units:
            close = difflib.get_close_matches(name, list(task_units), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"Unknown task {name!r} in fusion formula {formula!r}. Expected task names: "
                f"{sorted(task_units)}.{hint}"
            )
        if task_units[name] != 1:
            raise ValueError(
                f"Task {name!r} in fusion formula {formula!r} has {task_units[name]} outputs per example; a "
                "formula takes tasks with one output (binary probabilities, regression values), not "
                "multiclass heads."
            )
    return used


def evaluate(tree: ast.expr, values: Mapping[str, Any], power: Callable[[Any, Any], Any]) -> Any:
    """The formula on ``values`` (task outputs, tensors or arrays); ``power(a, b)`` computes ``a ** b``."""

    def walk(node: ast.AST) -> Any:
        if isinstance(node, ast.Name):
            return values[node.id]
        if isinstance(node, ast.Constant):
            return float(node.value)  # type: ignore[arg-type]  # numbers only, see _check
        if isinstance(node, ast.UnaryOp):
            operand = walk(node.operand)
            return -operand if isinstance(node.op, ast.USub) else operand
        assert isinstance(node, ast.BinOp)
        left, right = walk(node.left), walk(node.right)
        op = _BINARY[type(node.op)]
        if op == "+":
            return left + right
        if op == "-":
            return left - right
        if op == "*":
            return left * right
        if op == "/":
            return left / right
        return power(left, right)

    return walk(tree)


def fusion_endpoint(
    model: Any, specs: Sequence[Any], name: str, formula: str, inputs_of: Callable[..., Any]
) -> Any:
    """The signature function ``{name: formula(task outputs)}`` over ``model``'s outputs."""
    import tensorflow as tf

    tree = parse_formula(formula)
    tasks = formula_tasks(formula)

    def fuse(inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        result = model(inputs_of(model, specs, inputs), training=False)
        values = {t: tf.cast(result[t], tf.float32) for t in tasks}
        return {name: tf.convert_to_tensor(evaluate(tree, values, tf.pow), dtype=tf.float32)}

    return fuse


__all__ = [
    "ALLOWED",
    "FUSION_FILE",
    "check_tasks",
    "evaluate",
    "formula_tasks",
    "fusion_endpoint",
    "parse_formula",
]
