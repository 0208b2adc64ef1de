"""A data candidate's `--ref`: dbt vars, only those the unit declares, each checked against
its declared type before dbt runs, since a model may paste a var into SQL."""

from __future__ import annotations

import math
import re
from datetime import date
from typing import Any

import yaml

from ...errors import UDError
from ...redaction import redact_text
from ...units import Unit
from .unit import DEFAULT_STRING_PATTERN, VAR_NAME_RE, VarSpec

MAX_REF_CHARS = 2000  # vars are a few short values; anything longer is refused unread
PREVIEW_CHARS = 12  # how much of a refused value a message shows (redacted): enough to recognise it
DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
TIMESTAMP_TAG, BOOL_TAG = "tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:bool"


class _VarsLoader(yaml.SafeLoader):
    """Safe YAML read as written, closer to YAML 1.2: timestamps stay text (YAML 1.1 reads
    2026-11-01 as a date and 2026-02-30 as an error) and only true/false are booleans (not
    no, off, y). Every value is then checked against its declared type (`_problem`)."""


_VarsLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (TIMESTAMP_TAG, BOOL_TAG)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_VarsLoader.add_implicit_resolver(
    BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def parse_vars(unit: Unit, ref: str) -> dict[str, Any]:
    """A data candidate's `ref`: dbt vars as YAML (`{as_of_date: '2026-11-01'}`), each one the
    unit declares (`vars`), checked against its declared type and returned typed.

    Checked before dbt runs, because a model may paste a var into SQL. A refusal names the var
    and its rule but shows at most a short, redacted prefix of the value: the message goes to
    the ledger and to whoever asked."""
    if not ref.strip():
        return {}
    if len(ref) > MAX_REF_CHARS:
        raise UDError(
            "UD-DATA-BAD-VARS",
            f"unit {unit.name}: --ref is {len(ref)} characters long, more than {MAX_REF_CHARS}",
            "give only the declared vars, as YAML: --ref \"{as_of_date: '2026-11-01'}\"",
        )
    try:
        parsed = yaml.load(ref, Loader=_VarsLoader)
    except (yaml.YAMLError, ValueError, RecursionError):
        parsed = None
    if not isinstance(parsed, dict):
        raise UDError(
            "UD-DATA-BAD-VARS",
            f"unit {unit.name}: --ref {_preview(ref)} is not a mapping of dbt vars",
            "give vars as YAML, e.g. --ref \"{as_of_date: '2026-11-01'}\"",
        )
    declared: dict[str, VarSpec] = getattr(unit, "vars", {})
    accepts = ", ".join(sorted(declared)) or "none"
    out: dict[str, Any] = {}
    for name, value in parsed.items():
        spec = declared.get(name) if isinstance(name, str) else None
        if spec is None:
            shown = (
                repr(name)
                if isinstance(name, str) and VAR_NAME_RE.match(name)
                else "a var whose name is not a name"
            )
            raise UDError(
                "UD-DATA-UNKNOWN-VAR",
                f"unit {unit.name}: --ref sets {shown}, which the unit does not declare "
                f"(it accepts: {accepts})",
                "give only declared vars, or declare it under `vars:` in the declaration of "
                f"{unit.name}",
            )
        out[name] = _checked(unit, name, spec, value)
    return out


def _checked(unit: Unit, name: str, spec: VarSpec, value: Any) -> Any:
    """`value` as dbt gets it (as parsed: text, int, float or bool), or a refusal."""
    problem = _problem(spec, value)
    if problem:
        raise UDError(
            "UD-DATA-BAD-VAR-VALUE",
            f"unit {unit.name}: var {name!r}: {_preview(value)} {problem}",
            f'give {name} as {_expected(spec)}, e.g. --ref "{{{name}: {_example(spec)}}}"',
        )
    return value


def _problem(spec: VarSpec, value: Any) -> str | None:
    """What is wrong with `value` for a var declared as `spec`; None when nothing is."""
    if spec.type == "date":
        valid = isinstance(value, str) and DATE_RE.fullmatch(value) and _is_date(value)
        return None if valid else "is not a date (YYYY-MM-DD)"
    if spec.type == "string":
        pattern = spec.pattern or DEFAULT_STRING_PATTERN
        if not isinstance(value, str):
            return "is not a string"
        return (
            None if re.fullmatch(pattern, value) else f"does not match {pattern!r}"
        )  # whole: no `$` before a newline
    if spec.type in ("integer", "number"):
        kinds = (int,) if spec.type == "integer" else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value):
            return f"is not {'an integer' if spec.type == 'integer' else 'a finite number'}"
        if (spec.min is not None and value < spec.min) or (
            spec.max is not None and value > spec.max
        ):
            return f"is outside [{_bound(spec.min)}, {_bound(spec.max)}]"
        return None
    if spec.type == "boolean":
        return None if isinstance(value, bool) else "is not true or false"
    allowed = spec.values or []  # enum; `type(...) is` so that true is not 1
    return (
        None
        if any(type(v) is type(value) and v == value for v in allowed)
        else f"is not one of {', '.join(map(str, allowed))}"
    )


def _is_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
        return True
    except ValueError:
        return False


def _bound(value: float | None) -> str:
    return "..." if value is None else f"{value:g}"


def _expected(spec: VarSpec) -> str:
    return {
        "date": "a date (YYYY-MM-DD)",
        "string": f"a string matching {spec.pattern or DEFAULT_STRING_PATTERN!r}",
        "integer": "an integer",
        "number": "a number",
        "boolean": "true or false",
        "enum": f"one of {', '.join(map(str, spec.values or ()))}",
    }[spec.type]


def _example(spec: VarSpec) -> str:
    if spec.type == "enum" and spec.values:
        return str(spec.values[0])
    return {
        "date": "'2026-11-01'",
        "integer": str(int(spec.min or 1)),
        "number": f"{spec.min or 1:g}",
        "boolean": "true",
    }.get(spec.type, "...")


def _preview(value: Any) -> str:
    """What a refusal may show of a value it refuses: its type for a structure, else a short,
    redacted prefix (the value may be an attack, or a secret pasted by mistake)."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, (list, tuple, set)):
        return "a list"
    if value is None:
        return "an empty value"
    text = redact_text(str(value))
    return repr(text[:PREVIEW_CHARS] + ("..." if len(text) > PREVIEW_CHARS else ""))
