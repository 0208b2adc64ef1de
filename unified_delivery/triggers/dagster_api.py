"""Ask a running Dagster instance to evaluate a sensor now, through its GraphQL API.

The sensor is evaluated with a dry run in the code location (so the same code and state as
the daemon's ticks), then each run it requests is launched with the run key and sensor name
the daemon would have set, unless a run with that key exists. Standard library only: a Git
hook runs this file directly (`python -I dagster_api.py ...`) without importing Dagster, so a
push waits a fraction of a second, and not at all when no instance is running.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request

RUN_KEY_TAG = "dagster/run_key"
SENSOR_NAME_TAG = "dagster/sensor_name"

FIND = """query { workspaceOrError { __typename ... on Workspace { locationEntries { name
  locationOrLoadError { __typename ... on RepositoryLocation { repositories { name
  sensors { name } } } } } } } }"""
DRY_RUN = """mutation($selector: SensorSelector!, $cursor: String) {
  sensorDryRun(selectorData: $selector, cursor: $cursor) {
  __typename
  ... on DryRunInstigationTick { evaluationResult { skipReason error { message }
    runRequests { runKey jobName runConfigYaml tags { key value }
      assetSelection { path } assetChecks { name assetKey { path } } } } }
  ... on PythonError { message } ... on SensorNotFoundError { message } } }"""
RUNS_WITH_KEY = """query($key: String!) {
  runsOrError(filter: {tags: [{key: "dagster/run_key", value: $key}]}, limit: 1) {
  __typename ... on Runs { results { runId } } } }"""
LAUNCH = """mutation($params: ExecutionParams!) { launchRun(executionParams: $params) { __typename
  ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
  ... on RunConfigValidationInvalid { errors { message } } ... on InvalidSubsetError { message }
  ... on PipelineNotFoundError { message } } }"""


class Unavailable(Exception):
    """No Dagster webserver answers at that address."""


def graphql(url: str, query: str, variables: dict | None = None, timeout: float = 10) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    req = urllib.request.Request(
        url.rstrip("/") + "/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            doc = json.loads(resp.read())
    except urllib.error.HTTPError as exc:  # Dagster answered, with an error
        try:
            doc = json.loads(exc.read())
        except ValueError:
            raise RuntimeError(f"Dagster at {url} answered HTTP {exc.code}") from None
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, TimeoutError):
            raise Unavailable(f"Dagster at {url} did not answer within {timeout:.0f} s") from None
        raise Unavailable(f"no Dagster answers at {url}: {reason}") from None
    if doc.get("errors"):
        raise RuntimeError(f"Dagster GraphQL error: {doc['errors'][0].get('message')}")
    return doc["data"]


def find_sensor(url: str, sensor: str, timeout: float) -> tuple[str, str]:
    data = graphql(url, FIND, timeout=timeout)["workspaceOrError"]
    for entry in data.get("locationEntries", []):
        loc = entry.get("locationOrLoadError") or {}
        for repo in loc.get("repositories", []) or []:
            if any(s["name"] == sensor for s in repo["sensors"]):
                return entry["name"], repo["name"]
    raise RuntimeError(f"no sensor named {sensor} in the workspace at {url}")


def selection(req: dict) -> dict:
    """A request's assets and checks as the launch's subset: a promotion runs its unit's stages
    of its environment's job, never the whole job (every unit's)."""
    if req.get("assetSelection") is None:
        return {}
    checks = req.get("assetChecks") or []  # Dagster answers null for none: none it is
    return {
        "assetSelection": [{"path": k["path"]} for k in req["assetSelection"]],
        "assetCheckSelection": [
            {"assetKey": {"path": c["assetKey"]["path"]}, "name": c["name"]} for c in checks
        ],
    }


def evaluate_now(url: str, sensor: str, timeout: float = 10) -> dict:
    """Evaluate `sensor` and launch what it requests; raises Unavailable without a running
    Dagster."""
    location, repository = find_sensor(url, sensor, timeout)
    selector = {
        "repositoryLocationName": location,
        "repositoryName": repository,
        "sensorName": sensor,
    }
    # The sensors keep their own state (triggers.base), so Dagster's cursor is not passed.
    tick = graphql(url, DRY_RUN, {"selector": selector, "cursor": None}, timeout=max(timeout, 30))[
        "sensorDryRun"
    ]
    if tick["__typename"] != "DryRunInstigationTick":
        raise RuntimeError(
            f"{sensor} could not be evaluated: {tick.get('message', tick['__typename'])}"
        )
    result = tick["evaluationResult"] or {}
    if result.get("error"):
        raise RuntimeError(f"{sensor} failed: {result['error']['message'].strip()}")
    out = {
        "sensor": sensor,
        "launched": [],
        "skipped": [],
        "errors": [],
        "skip_reason": result.get("skipReason"),
    }
    for req in result.get("runRequests") or []:
        key = req["runKey"]
        if key and graphql(url, RUNS_WITH_KEY, {"key": key}, timeout)["runsOrError"].get("results"):
            out["skipped"].append(key)
            continue
        tags = {t["key"]: t["value"] for t in req["tags"]}
        tags.update({SENSOR_NAME_TAG: sensor, **({RUN_KEY_TAG: key} if key else {})})
        params = {
            "selector": {
                "repositoryLocationName": location,
                "repositoryName": repository,
                "jobName": req["jobName"],
                **selection(req),
            },
            "runConfigData": req["runConfigYaml"],
            "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
        }
        launched = graphql(url, LAUNCH, {"params": params}, timeout)["launchRun"]
        if launched["__typename"] == "LaunchRunSuccess":
            out["launched"].append(
                {"run_key": key, "run_id": launched["run"]["runId"], "job": req["jobName"]}
            )
        else:
            detail = launched.get("message") or "; ".join(
                e["message"] for e in launched.get("errors", [])
            )
            out["errors"].append({"run_key": key, "error": f"{launched['__typename']}: {detail}"})
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="Ask a running Dagster to evaluate a sensor now (a Git hook's client)."
    )
    p.add_argument("--url", required=True)
    p.add_argument("--sensor", required=True)
    p.add_argument("--timeout", type=float, default=10)
    args = p.parse_args(argv)
    try:
        out = evaluate_now(args.url, args.sensor, args.timeout)
    except Unavailable as exc:
        print(f"ud: {exc}; the sensor {args.sensor} sees this push at its next tick")
        return 0
    except (
        Exception
    ) as exc:  # a hook must never turn a push into an error: say what happened and go on
        print(f"ud: could not ask Dagster to evaluate {args.sensor}: {exc}")
        return 0
    runs = (
        ", ".join(f"{r['run_key']} (run {r['run_id'][:8]})" for r in out["launched"])
        or "no new run"
    )
    print(
        f"ud: {args.sensor} evaluated by Dagster at {args.url}: {runs}"
        + (f"; already run: {', '.join(out['skipped'])}" if out["skipped"] else "")
        + "".join(f"\nud: launch failed for {e['run_key']}: {e['error']}" for e in out["errors"])
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
