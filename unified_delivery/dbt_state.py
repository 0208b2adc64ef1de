"""What a data candidate builds, given what production already has: slim CI on the platform.

After each production publish the platform keeps the manifest of the version it published
(`<home>/dbt-state/<unit>/<version>/manifest.json`, with `production` naming the version),
rewritten so that each node names the relation that really holds it: built by that version in
its audit schema, or read from an earlier one. A candidate then builds, in its own audit
schema:

- with no production state yet: its selection and every unselected parent (`+selection`),
  so a selection written as a user writes it (`customers orders`) has what it reads;
- with a production state: of the selection and what it reads, only what changed since it
  and what depends on that (`state:modified+`), deferring every other parent to the relation
  the state names (`--defer --state`); the unchanged selected models are views onto
  production's relations, so the audit schema still holds the whole selection for the tests
  and the publish. A node production never had is built.

What a selection reads is its parents and the other models of the tests touching it (a
`relationships` test from `orders` to `customers`), so every such test can run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

BUILDABLE = ("model", "seed", "snapshot")
STATE_FILE = "manifest.json"


@dataclass(frozen=True)
class Plan:
    selected: list[str]  # unique ids of the selection (models, seeds, snapshots)
    parents_built: list[str]  # unselected nodes built in the audit schema whatever changed
    parents_deferred: list[str]  # unselected nodes that may be read where the state has them
    slim: bool  # a production state exists: build state:modified+ of the selection only
    args: list[str] = field(default_factory=list)  # dbt's --select (and --defer --state) args


def _selector(node: dict) -> str:
    return "fqn:" + ".".join(node["fqn"])


def needed(manifest: dict, selected: list[str]) -> set[str]:
    """The unselected nodes a selection's build and tests read: its parents, and the other
    models of every test touching it (a `relationships` test from `orders` to `customers`), with
    their own parents."""
    nodes, chosen = manifest["nodes"], set(selected)
    start = set(selected)
    for node in nodes.values():
        if node["resource_type"] == "test":
            parents = set(node.get("depends_on", {}).get("nodes", []))
            if parents & chosen:
                start |= parents
    out, todo = set(), list(start)
    while todo:
        uid = todo.pop()
        if uid not in chosen and uid in nodes and nodes[uid]["resource_type"] in BUILDABLE:
            out.add(uid)
        for parent in manifest["parent_map"].get(uid, []):
            if parent not in out and parent not in chosen and parent in nodes:
                todo.append(parent)
    return {u for u in out if nodes[u]["resource_type"] in BUILDABLE}


def plan(manifest: dict, selected: list[str], state: dict | None, state_dir: Path | None) -> Plan:
    nodes = manifest["nodes"]
    have = {u for u, n in (state or {}).get("nodes", {}).items() if n["resource_type"] in BUILDABLE}
    others = needed(manifest, selected)
    if state is None:
        built = sorted(others)
        args = ["--select", *(_selector(nodes[u]) for u in [*selected, *built])]
        return Plan(sorted(selected), built, [], False, args)
    # What production never had is built; of the rest, what changed since production and what
    # depends on it (dbt decides, from the state), less what the selection does not read; the
    # others are read where production has them. One `state:modified+`: dbt compares the whole
    # project with the state once per term.
    new = sorted(u for u in others if u not in have)
    wanted = {*selected, *others}
    outside = sorted(
        u for u, n in nodes.items() if n["resource_type"] in BUILDABLE and u not in wanted
    )
    args = ["--select", "state:modified+", *(_selector(nodes[u]) for u in new)]
    if outside:
        args += ["--exclude", *(_selector(nodes[u]) for u in outside)]
    args += ["--defer", "--state", str(state_dir)]
    return Plan(sorted(selected), new, sorted(others - set(new)), True, args)


def kept(manifest: dict, executed: set[str], state: dict | None) -> dict:
    """The manifest of a build as the platform keeps it: a node it built names its audit
    relation, a node it read from the state names the state's relation, and a node that is in
    neither is left out (the next candidate then sees it as new, and builds it)."""
    from_state = (state or {}).get("nodes", {})
    out = dict(manifest)
    nodes = {}
    for uid, node in manifest["nodes"].items():
        if node["resource_type"] not in BUILDABLE:
            nodes[uid] = node
        elif uid in executed:
            nodes[uid] = {k: v for k, v in node.items() if k != "defer_relation"}
        elif uid in from_state:
            old = from_state[uid]
            nodes[uid] = {
                **{k: v for k, v in node.items() if k != "defer_relation"},
                **{k: old.get(k) for k in ("database", "schema", "alias", "relation_name")},
            }
    out["nodes"] = nodes
    return out


def write_state(folder: Path, manifest: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(manifest))
    tmp.replace(folder / STATE_FILE)
    return folder
