"""A data unit's declaration in dbt: the `ud` key of a dbt model's `meta`.

Owner team, gates, budget, policy and the vars a candidate may set come from the `meta.ud`
of the node named like the unit (or the first selected node that has one), so a dbt-only
change needs no Python; the YAML declaration may set or override any of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ... import dbt
from ...errors import UDError

META_FIELDS = (
    "team",
    "gates",
    "budget",
    "policy",
    "depends_on",
    "description",
    "environments",
    "vars",
)
META_ONLY = ("select", "publish")  # what only a unit declared in meta alone may say there


def checked_meta(node: dict) -> dict[str, Any]:
    """A node's `meta.ud` block; a key that is not a unit field is refused, never ignored: a
    misspelt `gatess:` would otherwise drop the data-quality and cost gates without a word."""
    meta = dbt.node_meta(node)
    if not isinstance(meta, dict):
        raise UDError(
            "UD-CONFIG-DBT-META",
            f"meta.ud of {_where(node)} is not a mapping",
            "write meta: {ud: {team: ...}}",
        )
    unknown = sorted(set(meta) - set(META_FIELDS) - set(META_ONLY))
    if unknown:
        raise UDError(
            "UD-CONFIG-DBT-META",
            f"meta.ud of {_where(node)}: unknown key(s) {', '.join(map(repr, unknown))}",
            f"use only: {', '.join((*META_FIELDS, *META_ONLY))}",
        )
    return meta


def _where(node: dict) -> str:
    return node.get("original_file_path") or node.get("unique_id", "?")


def merge_dbt_meta(attributes: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    """Resolve the project path and fill the declaration from dbt meta where the YAML is silent."""
    attrs = dict(attributes)
    if attrs.get("repository"):
        return _git_attributes(attrs, base_dir)
    project = Path(attrs.get("project", "."))
    if not project.is_absolute():
        project = (base_dir / project).resolve()
    attrs["project"] = str(project)
    if "select" not in attrs:
        return attrs  # pydantic names the missing field
    manifest = dbt.ensure_manifest(project)
    ids = dbt.select(manifest, attrs["select"], project)
    name = attrs.get("name", "?")
    if not ids:
        raise UDError(
            "UD-CONFIG-UNIT",
            f"unit {name}: field select: {attrs['select']!r} selects nothing in {project}",
            "name models that exist in the dbt project (dbt ls --select ...)",
            exit_code=2,
        )
    nodes = [manifest["nodes"][u] for u in ids]
    own = [n for n in nodes if n["name"] == name] + [n for n in nodes if dbt.node_meta(n)]
    meta = checked_meta(own[0]) if own else {}
    for key in META_FIELDS:
        if key not in attrs and key in meta:
            attrs[key] = meta[key]
    if "gates" not in attrs:
        attrs["gates"] = [{"type": "dbt-tests"}]
    return attrs


def _git_attributes(attrs: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    """A unit whose dbt project is in a Git repository: a local repository is relative to the
    unit's file, `project` is a folder inside it. Its dbt files are read at the commit a build
    checks out, not when the definitions load (a push must not be able to break the load):
    team, gates and the rest come from the YAML, the gates by default dbt's tests."""
    from ...git_mirror import is_local

    repo = attrs["repository"]
    if isinstance(repo, str) and is_local(repo) and "{home}" not in repo:
        attrs["repository"] = str((base_dir / repo).resolve())
    attrs.setdefault("gates", [{"type": "dbt-tests"}])
    return attrs
