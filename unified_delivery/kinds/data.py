"""Data units: a dbt selection in any dbt project.

Owner team, gates, budget, policy and the vars a candidate may set come from the `ud` key
of the dbt `meta` of the node named like the unit (or the first selected node that has one),
so a dbt-only change needs no Python; the YAML declaration may set or override any of them.

A candidate's `--ref` is dbt vars; only declared ones, each checked against its type before
dbt runs (`parse_vars`), since a model may paste a var into SQL.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from .. import dbt
from ..errors import UDError
from ..redaction import redact_text
from ..targets.base import Artifact
from ..targets.roles import Warehouse
from ..units import DEFAULT_STRING_PATTERN, VAR_NAME_RE, DataUnit, Unit, VarSpec
from .base import BuildContext, KindTranslator

META_FIELDS = ("team", "gates", "budget", "policy", "depends_on", "description", "environments", "vars")
META_ONLY = ("select", "publish")  # what only a unit declared in meta alone may say there


def checked_meta(node: dict) -> dict[str, Any]:
    """A node's `meta.ud` block; a key that is not a unit field is refused, never ignored: a
    misspelt `gatess:` would otherwise drop the data-quality and cost gates without a word."""
    meta = dbt.node_meta(node)
    if not isinstance(meta, dict):
        raise UDError("UD-CONFIG-DBT-META", f"meta.ud of {_where(node)} is not a mapping", "write meta: {ud: {team: ...}}")
    unknown = sorted(set(meta) - set(META_FIELDS) - set(META_ONLY))
    if unknown:
        raise UDError("UD-CONFIG-DBT-META", f"meta.ud of {_where(node)}: unknown key(s) {', '.join(map(repr, unknown))}",
                      f"use only: {', '.join((*META_FIELDS, *META_ONLY))}")
    return meta


def _where(node: dict) -> str:
    return node.get("original_file_path") or node.get("unique_id", "?")


def merge_dbt_meta(attributes: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    """Resolve the project path and fill the declaration from dbt meta where the YAML is silent."""
    attrs = dict(attributes)
    project = Path(attrs.get("project", ""))
    if not project.is_absolute():
        project = (base_dir / project).resolve()
    attrs["project"] = str(project)
    if "select" not in attrs:
        return attrs  # pydantic names the missing field
    manifest = dbt.ensure_manifest(project)
    ids = dbt.select(manifest, attrs["select"], project)
    name = attrs.get("name", "?")
    if not ids:
        raise UDError("UD-CONFIG-UNIT", f"unit {name}: field select: {attrs['select']!r} selects nothing in {project}",
                      "name models that exist in the dbt project (dbt ls --select ...)", exit_code=2)
    nodes = [manifest["nodes"][u] for u in ids]
    own = [n for n in nodes if n["name"] == name] + [n for n in nodes if dbt.node_meta(n)]
    meta = checked_meta(own[0]) if own else {}
    for key in META_FIELDS:
        if key not in attrs and key in meta:
            attrs[key] = meta[key]
    if "gates" not in attrs:
        attrs["gates"] = [{"type": "dbt-tests"}]
    return attrs


class DataTranslator(KindTranslator):
    kind = "data"
    unit_class = DataUnit
    needs = (Warehouse,)

    def validate(self, unit: Unit, units: dict[str, Unit]) -> None:
        assert isinstance(unit, DataUnit)
        manifest = dbt.ensure_manifest(unit.project)
        ids = dbt.select(manifest, unit.select, Path(unit.project))
        if not ids:
            self.refuse(unit, "select", f"{unit.select!r} selects nothing in {unit.project}",
                        "name models that exist in the dbt project (dbt ls --select ...)")
        models = {manifest["nodes"][u]["name"] for u in ids if manifest["nodes"][u]["resource_type"] == "model"}
        for name in unit.publish:
            if name not in models:
                self.refuse(unit, "publish", f"{name!r} is not a model of the selection {unit.select!r}",
                            f"publish some of: {', '.join(sorted(models))}")

    def published(self, unit: DataUnit) -> list[dict]:
        """The model nodes readers see: `publish`, or every model of the selection."""
        manifest = dbt.ensure_manifest(unit.project)
        ids = dbt.select(manifest, unit.select, Path(unit.project))
        nodes = [manifest["nodes"][u] for u in ids if manifest["nodes"][u]["resource_type"] == "model"]
        return [n for n in nodes if not unit.publish or n["name"] in unit.publish]

    def build_candidate(self, unit: Unit, ctx: BuildContext) -> Artifact:
        assert isinstance(unit, DataUnit)
        dbt_vars = parse_vars(unit, ctx.config.get("ref") or "")  # first: a refused var never reaches dbt
        manifest = dbt.ensure_manifest(unit.project)
        ids = dbt.select(manifest, unit.select, Path(unit.project))
        if not ids:
            raise UDError("UD-DATA-EMPTY-SELECTION", f"unit {unit.name}: {unit.select!r} selects nothing",
                          "fix `select`")
        version = dbt.selection_digest(manifest, ids)
        if dbt_vars:  # the same code with other vars is another product: another version
            version = hashlib.sha256((version + json.dumps(dbt_vars, sort_keys=True)).encode()).hexdigest()[:12]
        models = [n["name"] for n in self.published(unit)]
        warehouse = ctx.targets.role(unit, Warehouse)
        return warehouse.write(unit, version, models=models, log=ctx.log, dbt_vars=dbt_vars)


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
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_VarsLoader.add_implicit_resolver(BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def parse_vars(unit: Unit, ref: str) -> dict[str, Any]:
    """A data candidate's `ref`: dbt vars as YAML (`{as_of_date: '2026-11-01'}`), each one the
    unit declares (`vars`), checked against its declared type and returned typed.

    Checked before dbt runs, because a model may paste a var into SQL. A refusal names the var
    and its rule but shows at most a short, redacted prefix of the value: the message goes to
    the ledger and to whoever asked."""
    if not ref.strip():
        return {}
    if len(ref) > MAX_REF_CHARS:
        raise UDError("UD-DATA-BAD-VARS", f"unit {unit.name}: --ref is {len(ref)} characters long, more than "
                      f"{MAX_REF_CHARS}", "give only the declared vars, as YAML: --ref \"{as_of_date: '2026-11-01'}\"")
    try:
        parsed = yaml.load(ref, Loader=_VarsLoader)
    except (yaml.YAMLError, ValueError, RecursionError):
        parsed = None
    if not isinstance(parsed, dict):
        raise UDError("UD-DATA-BAD-VARS", f"unit {unit.name}: --ref {_preview(ref)} is not a mapping of dbt vars",
                      "give vars as YAML, e.g. --ref \"{as_of_date: '2026-11-01'}\"")
    declared: dict[str, VarSpec] = getattr(unit, "vars", {})
    accepts = ", ".join(sorted(declared)) or "none"
    out: dict[str, Any] = {}
    for name, value in parsed.items():
        spec = declared.get(name) if isinstance(name, str) else None
        if spec is None:
            shown = repr(name) if isinstance(name, str) and VAR_NAME_RE.match(name) else "a var whose name is not a name"
            raise UDError("UD-DATA-UNKNOWN-VAR", f"unit {unit.name}: --ref sets {shown}, which the unit does not declare "
                          f"(it accepts: {accepts})",
                          f"give only declared vars, or declare it under `vars:` in the declaration of {unit.name}")
        out[name] = _checked(unit, name, spec, value)
    return out


def _checked(unit: Unit, name: str, spec: VarSpec, value: Any) -> Any:
    """`value` as dbt gets it (as parsed: text, int, float or bool), or a refusal."""
    problem = _problem(spec, value)
    if problem:
        raise UDError("UD-DATA-BAD-VAR-VALUE", f"unit {unit.name}: var {name!r}: {_preview(value)} {problem}",
                      f"give {name} as {_expected(spec)}, e.g. --ref \"{{{name}: {_example(spec)}}}\"")
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
        return None if re.fullmatch(pattern, value) else f"does not match {pattern!r}"  # whole: no `$` before a newline
    if spec.type in ("integer", "number"):
        kinds = (int,) if spec.type == "integer" else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value):
            return f"is not {'an integer' if spec.type == 'integer' else 'a finite number'}"
        if (spec.min is not None and value < spec.min) or (spec.max is not None and value > spec.max):
            return f"is outside [{_bound(spec.min)}, {_bound(spec.max)}]"
        return None
    if spec.type == "boolean":
        return None if isinstance(value, bool) else "is not true or false"
    allowed = spec.values or []  # enum; `type(...) is` so that true is not 1
    return None if any(type(v) is type(value) and v == value for v in allowed) else \
        f"is not one of {', '.join(map(str, allowed))}"


def _is_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
        return True
    except ValueError:
        return False


def _bound(value: float | None) -> str:
    return "..." if value is None else f"{value:g}"


def _expected(spec: VarSpec) -> str:
    return {"date": "a date (YYYY-MM-DD)", "string": f"a string matching {spec.pattern or DEFAULT_STRING_PATTERN!r}",
            "integer": "an integer", "number": "a number", "boolean": "true or false",
            "enum": f"one of {', '.join(map(str, spec.values or ()))}"}[spec.type]


def _example(spec: VarSpec) -> str:
    if spec.type == "enum" and spec.values:
        return str(spec.values[0])
    return {"date": "'2026-11-01'", "integer": str(int(spec.min or 1)), "number": f"{spec.min or 1:g}",
            "boolean": "true"}.get(spec.type, "...")


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
