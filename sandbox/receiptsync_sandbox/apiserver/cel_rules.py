"""x-kubernetes-validations: CEL rules compiled once with cel-python and evaluated per request.

cel-python is the CEL standard library; kube-apiserver adds a few libraries on top (strings, lists,
regex). The functions below add the parts of those a CRD is likely to use, with the apiserver's
meaning, so a rule that passes here does the same on a real cluster. ``matches`` is re-bound to RE2
because the apiserver's regexes are Go's (RE2), not Python's.
"""
from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING, Any, Callable

import celpy
import lark
import re2
from celpy import celtypes
from celpy.evaluation import CELEvalError

if TYPE_CHECKING:
    from .schema_node import SchemaNode

_ENV = celpy.Environment()

# Macros are syntax, not functions, in CEL; the parser leaves them as calls, so they are allowed here.
_MACROS = {"has", "all", "exists", "exists_one", "map", "filter"}
_STANDARD_FUNCTIONS = {
    "size", "contains", "type", "endsWith", "startsWith", "matches", "getDate", "getDayOfMonth",
    "getDayOfWeek", "getDayOfYear", "getFullYear", "getMonth", "getHours", "getMilliseconds",
    "getMinutes", "getSeconds", "bool", "bytes", "double", "duration", "int", "list", "map",
    "string", "timestamp", "uint", "dyn",
}
RULE_REASONS = ("FieldValueInvalid", "FieldValueForbidden", "FieldValueRequired", "FieldValueDuplicate")


def _matches(text: Any, pattern: Any) -> celtypes.BoolType:
    return celtypes.BoolType(re2.search(str(pattern), str(text)) is not None)


def _find(text: Any, pattern: Any) -> celtypes.StringType:
    found = re2.search(str(pattern), str(text))
    return celtypes.StringType(found.group(0) if found else "")


def _find_all(text: Any, pattern: Any, limit: Any = -1) -> celtypes.ListType:
    found = [celtypes.StringType(m.group(0)) for m in re2.finditer(str(pattern), str(text))]
    return celtypes.ListType(found if int(limit) < 0 else found[: int(limit)])


def _split(text: Any, sep: Any, limit: Any = -1) -> celtypes.ListType:
    parts = str(text).split(str(sep), int(limit) - 1 if int(limit) > 0 else -1)
    return celtypes.ListType([celtypes.StringType(p) for p in parts])


def _join(items: Any, sep: Any = "") -> celtypes.StringType:
    return celtypes.StringType(str(sep).join(str(i) for i in items))


def _replace(text: Any, old: Any, new: Any, limit: Any = -1) -> celtypes.StringType:
    return celtypes.StringType(str(text).replace(str(old), str(new), int(limit)))


def _index_of(container: Any, item: Any, start: Any = 0) -> celtypes.IntType:
    if isinstance(container, str):
        return celtypes.IntType(str(container).find(str(item), int(start)))
    items = list(container)
    return celtypes.IntType(items.index(item) if item in items else -1)


def _last_index_of(container: Any, item: Any) -> celtypes.IntType:
    if isinstance(container, str):
        return celtypes.IntType(str(container).rfind(str(item)))
    items = list(container)
    return celtypes.IntType(len(items) - 1 - items[::-1].index(item) if item in items else -1)


def _substring(text: Any, start: Any, end: Any = None) -> celtypes.StringType:
    text = str(text)
    stop = len(text) if end is None else int(end)
    if not 0 <= int(start) <= stop <= len(text):
        raise ValueError(f"substring index out of range: [{start}:{stop}] of length {len(text)}")
    return celtypes.StringType(text[int(start):stop])


def _trim(text: Any) -> celtypes.StringType:
    return celtypes.StringType(str(text).strip())


def _lower_ascii(text: Any) -> celtypes.StringType:
    return celtypes.StringType("".join(c.lower() if c.isascii() else c for c in str(text)))


def _upper_ascii(text: Any) -> celtypes.StringType:
    return celtypes.StringType("".join(c.upper() if c.isascii() else c for c in str(text)))


def _is_sorted(items: Any) -> celtypes.BoolType:
    values = list(items)
    return celtypes.BoolType(all(a <= b for a, b in zip(values, values[1:])))


def _sum(items: Any) -> Any:
    values = list(items)
    return sum(values[1:], values[0]) if values else celtypes.IntType(0)


def _min(items: Any) -> Any:
    return min(list(items))


def _max(items: Any) -> Any:
    return max(list(items))


# The Kubernetes CEL libraries' functions this sandbox provides (see the module docstring).
KUBE_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "matches": _matches,
    "find": _find,
    "findAll": _find_all,
    "split": _split,
    "join": _join,
    "replace": _replace,
    "indexOf": _index_of,
    "lastIndexOf": _last_index_of,
    "substring": _substring,
    "trim": _trim,
    "lowerAscii": _lower_ascii,
    "upperAscii": _upper_ascii,
    "isSorted": _is_sorted,
    "sum": _sum,
    "min": _min,
    "max": _max,
}
KNOWN_FUNCTIONS = _MACROS | _STANDARD_FUNCTIONS | set(KUBE_FUNCTIONS)


@dataclasses.dataclass
class CompiledRule:
    rule: str
    message: str | None
    message_expression: str | None
    field_path: str | None
    reason: str
    uses_old_self: bool
    program: Any = None  # celpy Runner; None when the rule did not compile
    message_program: Any = None
    compile_error: str | None = None


def _called_functions(ast: lark.Tree) -> set[str]:
    calls: set[str] = set()
    for tree in ast.iter_subtrees():
        if tree.data in ("member_dot_arg", "ident_arg", "dot_ident_arg"):
            calls.update(str(t) for t in tree.children if isinstance(t, lark.Token) and t.type == "IDENT")
    return calls


def _uses_old_self(ast: lark.Tree) -> bool:
    return any(
        isinstance(t, lark.Token) and t.type == "IDENT" and t == "oldSelf"
        for t in ast.scan_values(lambda v: isinstance(v, lark.Token))
    )


def _compile_expression(text: str) -> tuple[Any, lark.Tree | None, str | None]:
    """(program, ast, error): parse, check every called function exists, bind the kube functions."""
    try:
        ast = _ENV.compile(text)
    except Exception as exc:  # celpy raises CELParseError, lark errors for some inputs
        return None, None, f"compilation failed: {exc}".strip()
    unknown = sorted(_called_functions(ast) - KNOWN_FUNCTIONS)
    if unknown:
        return None, ast, f"compilation failed: undeclared reference to {', '.join(unknown)}"
    return _ENV.program(ast, functions=KUBE_FUNCTIONS), ast, None


def compile_rule(raw: dict[str, Any]) -> CompiledRule:
    text = str(raw.get("rule", ""))
    program, ast, error = _compile_expression(text)
    compiled = CompiledRule(
        rule=text,
        message=raw.get("message"),
        message_expression=raw.get("messageExpression"),
        field_path=raw.get("fieldPath"),
        reason=raw.get("reason") or "FieldValueInvalid",
        uses_old_self=ast is not None and _uses_old_self(ast),
        program=program,
        compile_error=error,
    )
    if compiled.message_expression:
        compiled.message_program, _, message_error = _compile_expression(compiled.message_expression)
        if message_error and not error:
            compiled.compile_error = f"messageExpression {message_error}"
    return compiled


def rule_problems(raw: dict[str, Any]) -> list[str]:
    """What is wrong with one x-kubernetes-validations entry (empty when it is usable)."""
    problems = []
    if not str(raw.get("rule", "")).strip():
        problems.append("rule: Required value")
    compiled = compile_rule(raw)
    if compiled.compile_error:
        problems.append(compiled.compile_error)
    if compiled.reason not in RULE_REASONS:
        problems.append(f"reason: Unsupported value: {compiled.reason!r}: supported values: {', '.join(RULE_REASONS)}")
    if compiled.field_path is not None and not str(compiled.field_path).startswith((".", "[")):
        problems.append("fieldPath: must be a relative JSON path such as .spec.field")
    return problems


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

# --- values --------------------------------------------------------------------------------------


def _string_to_cel(node: "SchemaNode | None", value: str) -> Any:
    """Formatted strings are typed in kube CEL: date/date-time are timestamps, duration a duration."""
    fmt = node.format if node is not None else None
    try:
        if fmt == "date-time":
            return celtypes.TimestampType(value)
        if fmt == "date":
            return celtypes.TimestampType(value + "T00:00:00Z")
        if fmt == "duration":
            return celtypes.DurationType(value)
    except Exception:  # an invalid formatted value was already reported by schema validation
        pass
    return celtypes.StringType(value)


def to_cel(node: "SchemaNode | None", value: Any) -> Any:
    """Convert a JSON value to CEL, typed by its schema (numbers are doubles, integers ints)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return celtypes.BoolType(value)
    if isinstance(value, int):
        if (node is not None and node.type == "number") or not _INT64_MIN <= value <= _INT64_MAX:
            return celtypes.DoubleType(value)  # JSON decoding in Go makes out-of-range integers floats too
        return celtypes.IntType(value)
    if isinstance(value, float):
        if node is not None and node.type == "integer" and value.is_integer() and _INT64_MIN <= value <= _INT64_MAX:
            return celtypes.IntType(int(value))
        return celtypes.DoubleType(value)
    if isinstance(value, str):
        return _string_to_cel(node, value)
    if isinstance(value, list):
        item_node = node.items if node is not None else None
        return celtypes.ListType([to_cel(item_node, v) for v in value])
    if isinstance(value, dict):
        return celtypes.MapType(
            {celtypes.StringType(k): to_cel(node.child(k) if node is not None else None, v) for k, v in value.items()}
        )
    return celpy.json_to_cel(value)


# --- evaluation ----------------------------------------------------------------------------------


@dataclasses.dataclass
class RuleFailure:
    field_path: str | None  # relative to the node, e.g. ".fromDate"; None for the node itself
    reason: str
    message: str


def _run(program: Any, activation: dict[str, Any]) -> Any:
    """Evaluate; cel-python both raises CELEvalError and returns it as a value, so unify the two."""
    try:
        return program.evaluate(activation)
    except CELEvalError as exc:
        return exc
    except Exception as exc:  # a library bug or a Python error in a bound function must not crash admission
        return CELEvalError(str(exc))


def _failure_message(rule: CompiledRule, activation: dict[str, Any]) -> str:
    if rule.message_program is not None:
        text = _run(rule.message_program, activation)
        if isinstance(text, str) and text.strip() and "\n" not in text:
            return str(text)
    if rule.message:
        return rule.message
    return f"failed rule: {rule.rule}"


def _eval_error_text(error: CELEvalError) -> str:
    detail = error.args[0] if error.args else str(error)
    return re.sub(r"\s+", " ", str(detail)).strip()


def evaluate(rule: CompiledRule, self_value: Any, old_value: Any, has_old: bool) -> RuleFailure | None:
    """Run one rule at one node; None when it holds (or does not apply)."""
    if rule.uses_old_self and not has_old:
        return None  # transition rules only run on update, where there is an old value
    if rule.program is None:
        return RuleFailure(None, "FieldValueInvalid", f"rule compiler initialization error: {rule.compile_error}")
    activation = {"self": self_value}
    if has_old:
        activation["oldSelf"] = old_value
    result = _run(rule.program, activation)
    if isinstance(result, CELEvalError):
        return RuleFailure(None, "FieldValueInvalid", f"{_failure_message(rule, activation)}: evaluation error: {_eval_error_text(result)}")
    if not isinstance(result, (celtypes.BoolType, bool)):
        return RuleFailure(None, "FieldValueInvalid", f"failed rule: {rule.rule}: rule did not evaluate to a bool")
    if result:
        return None
    return RuleFailure(rule.field_path, rule.reason, _failure_message(rule, activation))
