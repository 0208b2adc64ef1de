"""App target on Kubernetes: a Deployment, a Service and an optional autoscaler per unit
and environment, rendered from the unit's `kubernetes:` block.

Rendering is pure (`render_manifests`), so `ud render k8s`, the manifest-policy gate and
the tests see exactly what `deploy` applies. `deploy` applies with server-side apply
(field manager `unified-delivery`), waits for the rollout as `kubectl rollout status`
does and, when it does not finish in time, rolls back to the previous revision the way
`kubectl rollout undo` does: the pod template of the ReplicaSet that ran it is applied
again. Health is the Deployment's readiness. The `kubernetes` client is imported when a
method talks to the API, never at module import.
"""

from __future__ import annotations

import copy
import json
import math
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import Field

from ..errors import ConfigError, TargetError
from ..kinds.app.unit import AppUnit
from ..units import Resources, Unit
from .base import Artifact, BaseTarget, Deployment, Health, Log

DEFAULT_KUBERNETES_VERSION = "1.31"
FIELD_MANAGER = "unified-delivery"
K8S_CONFIG_TAG = "dagster-k8s/config"
VERSION = "ud/version"  # pod template annotation: any version string fits, a label value may not
DEPLOYED_AT = "ud/deployed-at"
PREVIOUS = "ud/previous-version"
ACTION = "ud/action"
REVISION = "deployment.kubernetes.io/revision"
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_PLACEHOLDER = re.compile(r"\{[a-z_]+\}")
_APPLY = "application/apply-patch+yaml"
ARGO_API = "argoproj.io/v1alpha1"
ARGO_SCHEMAS = "argo-rollouts-v1.9.1.json.gz"  # the CRDs' openAPIV3Schema, from the release
_ARGO: dict[str, dict[str, Any]] | None = None


def _now() -> str:
    return datetime.now(UTC).isoformat()


def dns_name(unit_name: str) -> str:
    """Unit names allow `_`; Kubernetes object names are DNS labels."""
    return unit_name.replace("_", "-")


def container_resources(res: Resources) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for part in ("requests", "limits"):
        values = {k: v for k, v in getattr(res, part).model_dump().items() if v is not None}
        if part == "limits" and res.gpu:
            values[res.gpu_resource] = str(
                res.gpu
            )  # extended resources: the request defaults to the limit
        if values:
            out[part] = values
    return out


def dagster_k8s_tags(unit: Unit) -> dict[str, Any]:
    """The `dagster-k8s/config` tag for a unit that declares the resources of its steps."""
    if unit.resources is None:
        return {}
    return {
        K8S_CONFIG_TAG: {"container_config": {"resources": container_resources(unit.resources)}}
    }


def _label_safe(labels: dict[str, str]) -> dict[str, str]:
    """The labels whose values Kubernetes accepts; the rest (a long version, a team with spaces) are
    left out."""
    return {k: v for k, v in labels.items() if len(v) <= 63 and _LABEL_VALUE.match(v)}


def _spec(unit: Unit):
    spec = getattr(unit, "kubernetes", None)
    if not isinstance(unit, AppUnit) or spec is None:
        raise ConfigError(
            "UD-CONFIG-K8S",
            f"unit {unit.name} has no kubernetes: block",
            f"add a `kubernetes:` block to the declaration of {unit.name} (an app unit; its "
            "`image:` may be left out when the app has a Containerfile)",
        )
    return spec


def _expand(unit: Unit, where: str, value: str, values: dict[str, str]) -> str:
    for key, sub in values.items():
        value = value.replace(key, sub)
    left = _PLACEHOLDER.findall(value)
    if left:
        raise ConfigError(
            "UD-CONFIG-K8S",
            f"unit {unit.name}: {where} uses {', '.join(left)}, which has no value in a cluster",
            f"set {where} in the kubernetes: block without it (known: {', '.join(values)})",
        )
    return value


def render_manifests(
    unit: Unit, env: str, version: str, *, mlflow_tracking_uri: str, image: str = ""
) -> list[dict[str, Any]]:
    """The objects `deploy` applies for `unit` at `version` in `env`: Service, Deployment,
    autoscaler. `image`: the version's image as its candidate recorded it (`repo@sha256:...`,
    an app with a Containerfile), which runs instead of the `kubernetes.image` template."""
    spec = _spec(unit)
    assert isinstance(unit, AppUnit)  # _spec refuses any other unit
    name = dns_name(unit.name)
    port = spec.port
    values = {
        "{env}": env,
        "{version}": version,
        "{port}": str(port),
        "{python}": "python",
        "{mlflow_tracking_uri}": mlflow_tracking_uri,
    }
    namespace = dns_name(_expand(unit, "namespace", spec.namespace, values))
    selector = {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/instance": f"{name}-{dns_name(env)}",
    }
    labels = {
        **selector,
        **_label_safe(
            {
                "app.kubernetes.io/managed-by": FIELD_MANAGER,
                "ud/unit": unit.name,
                "ud/env": env,
                "ud/team": unit.team,
            }
        ),
    }
    pod_labels = {**labels, **_label_safe({"app.kubernetes.io/version": version})}
    env_vars = {"HOST": "0.0.0.0", "PORT": str(port), **unit.service.env, **spec.env}
    health = spec.health_path or unit.service.health_path
    probe = {
        "httpGet": {"path": health, "port": "http"},
        "periodSeconds": 5,
        "timeoutSeconds": 2,
        "failureThreshold": 3,
    }
    non_root = spec.run_as_user != 0
    if not image and not spec.image:
        raise ConfigError(
            "UD-CONFIG-K8S",
            f"unit {unit.name}: no image to run for version {version[:12]}: the unit sets no "
            "kubernetes.image and the ledger has no candidate of that version built as an image",
            f"build the version first (`ud promote {unit.name} --to {unit.environments[0]}` "
            "builds its Containerfile), or set kubernetes.image",
        )
    container = {
        "name": "app",
        "image": image or _expand(unit, "image", spec.image, values),
        "imagePullPolicy": "IfNotPresent",
        "command": [_expand(unit, "service.command", a, values) for a in unit.service.command],
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "env": [
            {"name": k, "value": _expand(unit, f"env {k}", v, values)} for k, v in env_vars.items()
        ],
        "resources": container_resources(spec.resources),
        "readinessProbe": probe,
        "livenessProbe": {**copy.deepcopy(probe), "initialDelaySeconds": 10, "periodSeconds": 10},
        "securityContext": {
            "runAsNonRoot": non_root,
            "runAsUser": spec.run_as_user,
            "privileged": spec.privileged,
            "allowPrivilegeEscalation": spec.privileged,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # the root filesystem is read-only
    }
    if spec.secrets:
        container["envFrom"] = [{"secretRef": {"name": s}} for s in spec.secrets]
    # service.setup: init containers of the same image, environment and limits, in order. A
    # cluster runs them at every pod start (each replica, each restart), not once per release
    # as the local target does: they must be safe to run again (migrations usually are).
    setup = []
    for i, step in enumerate(unit.service.setup):
        argv = ["/bin/sh", "-c", step] if isinstance(step, str) else step
        init = {
            k: copy.deepcopy(v)
            for k, v in container.items()
            if k not in ("ports", "readinessProbe", "livenessProbe")
        }
        init.update(
            name=f"setup-{i}",
            command=[_expand(unit, f"service.setup[{i}]", a, values) for a in argv],
        )
        setup.append(init)
    meta = {"name": name, "namespace": namespace, "labels": labels}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": copy.deepcopy(meta),
        "spec": {
            # With an autoscaler the replica count is its field: applying one here would fight it.
            **({} if spec.hpa else {"replicas": spec.replicas}),
            "revisionHistoryLimit": 10,
            "selector": {"matchLabels": selector},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {
                "metadata": {"labels": pod_labels, "annotations": {VERSION: version}},
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": {
                        "runAsNonRoot": non_root,
                        "runAsUser": spec.run_as_user,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    **({"initContainers": setup} if setup else {}),
                    "containers": [container],
                    "volumes": [{"name": "tmp", "emptyDir": {}}],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": copy.deepcopy(meta),
        "spec": {
            "type": "ClusterIP",
            "selector": selector,
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }
    manifests = [service, deployment]
    if spec.hpa:
        manifests.append(
            {
                "apiVersion": "autoscaling/v2",
                "kind": "HorizontalPodAutoscaler",
                "metadata": copy.deepcopy(meta),
                "spec": {
                    "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                    "minReplicas": spec.hpa.min_replicas,
                    "maxReplicas": spec.hpa.max_replicas,
                    "metrics": [
                        {
                            "type": "Resource",
                            "resource": {
                                "name": "cpu",
                                "target": {
                                    "type": "Utilization",
                                    "averageUtilization": spec.hpa.cpu_target,
                                },
                            },
                        }
                    ],
                },
            }
        )
    if unit.rollout is not None:
        return _as_argo_rollout(unit, spec, manifests)
    return manifests


def _as_argo_rollout(
    unit: AppUnit, spec: Any, manifests: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The same app as an Argo Rollouts `Rollout` with the unit's canary steps, a canary Service
    beside the stable one, and an `AnalysisTemplate` of its bounds read from Prometheus
    (kubernetes.canary_metrics). Without traffic routing, Argo approximates a weight by the
    share of pods."""
    rollout_spec = unit.rollout
    assert rollout_spec is not None
    service, deployment, *rest = manifests
    meta = deployment["metadata"]
    name, ns = meta["name"], meta["namespace"]
    canary_service = copy.deepcopy(service)
    canary_service["metadata"]["name"] = f"{name}-canary"
    steps: list[dict[str, Any]] = []
    for step in rollout_spec.steps:
        steps += [
            {"setWeight": step.weight},
            {"pause": {"duration": f"{max(1, math.ceil(step.pause_s))}s"}},
        ]
    canary: dict[str, Any] = {
        "canaryService": canary_service["metadata"]["name"],
        "stableService": name,
        "maxUnavailable": 0,
        "maxSurge": 1,
        "steps": steps,
    }
    out = [service, canary_service]
    template = _analysis_template(unit, spec, name, ns, meta["labels"])
    if template is not None:
        canary["analysis"] = {
            "templates": [{"templateName": template["metadata"]["name"]}],
            "startingStep": 1,  # from the first weight on, in the background, to the end
        }
        out.append(template)
    rollout = {
        "apiVersion": ARGO_API,
        "kind": "Rollout",
        "metadata": copy.deepcopy(meta),
        "spec": {
            **{k: v for k, v in deployment["spec"].items() if k != "strategy"},
            "strategy": {"canary": canary},
        },
    }
    out.append(rollout)
    for extra in rest:  # the autoscaler scales the Rollout
        if extra["kind"] == "HorizontalPodAutoscaler":
            extra["spec"]["scaleTargetRef"] = {
                "apiVersion": ARGO_API,
                "kind": "Rollout",
                "name": name,
            }
        out.append(extra)
    return out


def _analysis_template(
    unit: AppUnit, spec: Any, name: str, ns: str, labels: dict[str, str]
) -> dict[str, Any] | None:
    assert unit.rollout is not None
    bounds, where = unit.rollout.analysis, spec.canary_metrics
    lenient = bounds.on_inconclusive == "promote"  # no traffic (NaN) passes instead of pausing

    def query(text: str) -> str:
        return text.replace("{service}", f"{name}-canary").replace("{namespace}", ns)

    def metric(metric_name: str, bound: float, text: str) -> dict[str, Any]:
        ok = f"result[0] <= {bound:g}"
        return {
            "name": metric_name,
            "interval": f"{max(10, round(bounds.interval_s))}s",  # a cluster's scrape interval
            "failureLimit": 0,
            "successCondition": f"isNaN(result[0]) || {ok}" if lenient else ok,
            "failureCondition": f"result[0] > {bound:g}",
            "provider": {"prometheus": {"address": where.prometheus, "query": query(text)}},
        }

    metrics = []
    if bounds.error_rate is not None:
        metrics.append(metric("error-rate", bounds.error_rate, where.error_rate_query))
    if bounds.latency_p95_ms is not None:
        metrics.append(metric("latency-p95-ms", bounds.latency_p95_ms, where.latency_p95_query))
    if not metrics:
        return None
    return {
        "apiVersion": ARGO_API,
        "kind": "AnalysisTemplate",
        "metadata": {"name": f"{name}-canary", "namespace": ns, "labels": dict(labels)},
        "spec": {"metrics": metrics},
    }


def _refuse_rollout(unit: Unit) -> None:
    if isinstance(unit, AppUnit) and unit.rollout is not None:
        raise TargetError(
            "UD-TARGET-K8S-ROLLOUT",
            f"{unit.name} declares a rollout: on Kubernetes it is an Argo Rollouts Rollout, "
            "which this target renders (`ud render k8s`) but does not apply or follow yet",
            f"apply `ud render k8s {unit.name} --env ENV` with kubectl or Argo CD on a cluster "
            "that runs Argo Rollouts, or remove `rollout:` to deploy a Deployment",
        )


def argo_schemas() -> dict[str, dict[str, Any]]:
    """The Rollout and AnalysisTemplate schemas of the Argo Rollouts CRDs this target renders
    for (vendored: schemas/), made strict: a field the CRD does not declare is an error, as
    the API server's strict field validation says."""
    global _ARGO
    if _ARGO is None:
        import gzip
        from importlib.resources import files

        raw = files("unified_delivery.targets").joinpath("schemas", ARGO_SCHEMAS).read_bytes()
        data = json.loads(gzip.decompress(raw))
        _ARGO = {kind: _strict(entry["schema"]) for kind, entry in data["schemas"].items()}
    return _ARGO


def _strict(schema: Any) -> Any:
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if "properties" in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            out.setdefault("additionalProperties", False)
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


def _argo_errors(manifest: dict[str, Any], kubernetes_version: str) -> list[str]:
    import jsonschema
    import kubernetes_validate

    where = f"{manifest['kind']}/{(manifest.get('metadata') or {}).get('name')}"
    validator = jsonschema.Draft7Validator(argo_schemas()[manifest["kind"]])
    errors = {  # one per field: a field may break several of its schema's alternatives
        ".".join(str(p) for p in e.absolute_path) or "(top)": e.message
        for e in validator.iter_errors(manifest)
    }
    if manifest["kind"] == "Rollout":  # its pod template, as a Deployment's
        meta = manifest["metadata"]
        as_deployment = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
            "spec": {
                "selector": manifest["spec"]["selector"],
                "template": manifest["spec"]["template"],
            },
        }
        try:
            kubernetes_validate.validate(as_deployment, kubernetes_version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.absolute_path) or "(top)"
            errors.setdefault(path, exc.message)
    return [f"{where}: {path}: {message}" for path, message in errors.items()]


def supported_versions() -> list[str]:
    from kubernetes_validate import utils

    return sorted(
        {utils.major_minor(v) for v in utils.all_versions()},
        key=lambda v: tuple(map(int, v.split("."))),
    )


def schema_errors(manifests: list[dict[str, Any]], kubernetes_version: str) -> list[str]:
    """Each manifest against the (strict) schema of that Kubernetes version; [] when all pass."""
    import kubernetes_validate

    wanted = kubernetes_version.lstrip("v")
    supported = supported_versions()
    if ".".join(wanted.split(".")[:2]) not in supported:
        raise ConfigError(
            "UD-K8S-VERSION",
            f"kubernetes_version {kubernetes_version!r} has no schema in kubernetes-validate",
            f"use one of {supported[0]} to {supported[-1]}",
        )
    errors = []
    for m in manifests:
        where = f"{m.get('kind')}/{(m.get('metadata') or {}).get('name')}"
        if m.get("apiVersion") == ARGO_API and m.get("kind") in argo_schemas():
            errors += _argo_errors(m, wanted)
            continue
        try:
            kubernetes_validate.validate(m, wanted, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.absolute_path) or "(top)"
            errors.append(f"{where}: {path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            errors.append(f"{where}: {exc.message}")
    return errors


def rollout_state(dep: dict[str, Any]) -> tuple[bool, str]:
    """Whether a Deployment's rollout is complete, by the rules of `kubectl rollout status`."""
    meta, spec, status = dep["metadata"], dep.get("spec") or {}, dep.get("status") or {}
    if status.get("observedGeneration", 0) < meta.get("generation", 0):
        return False, "the controller has not seen the new spec yet"
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return False, f"progress deadline exceeded: {cond.get('message', '')}"
    want = spec.get("replicas", 1)
    updated, total, available = (
        status.get(k) or 0 for k in ("updatedReplicas", "replicas", "availableReplicas")
    )
    if updated < want:
        return False, f"{updated} of {want} replicas updated"
    if total > updated:
        return False, f"{total - updated} old replicas still running"
    if available < updated:
        return False, f"{available} of {updated} updated replicas available"
    return True, f"{available} of {want} replicas available"


def _revision(obj: dict[str, Any]) -> int:
    return int(((obj.get("metadata") or {}).get("annotations") or {}).get(REVISION) or 0)


def _template_version(template: dict[str, Any]) -> str:
    return ((template.get("metadata") or {}).get("annotations") or {}).get(VERSION, "")


class _Api:
    """The few calls this target makes, on JSON dicts as the API sends them."""

    def __init__(self, api_client: Any, timeout_s: float):
        from kubernetes import client

        self.api_client = api_client
        self.apps = client.AppsV1Api(api_client)
        self.core = client.CoreV1Api(api_client)
        self.autoscaling = client.AutoscalingV2Api(api_client)
        self.timeout = timeout_s

    def _call(
        self, what: str, fn: Callable, *args: Any, missing_ok: bool = False, **kwargs: Any
    ) -> dict | None:
        from kubernetes.client.rest import ApiException
        from urllib3.exceptions import HTTPError

        try:
            resp = fn(*args, _preload_content=False, _request_timeout=self.timeout, **kwargs)
        except ApiException as exc:
            if missing_ok and exc.status == 404:
                return None
            try:
                detail = json.loads(exc.body or "{}").get("message") or exc.reason
            except ValueError:
                detail = exc.reason
            hint = {
                401: (
                    "the credentials were refused: check the kubeconfig or the service account "
                    "token"
                ),
                403: (
                    "the deploy identity lacks a permission (RBAC): see docs/kubernetes.md for the "
                    "Role it needs"
                ),
                404: "the namespace does not exist: create it first",
                422: (
                    "the object was refused as invalid: run `ud render k8s` and fix the unit's "
                    "kubernetes: block"
                ),
            }
            raise TargetError(
                "UD-TARGET-K8S-API",
                f"{what}: the Kubernetes API answered {exc.status}: {detail}",
                hint.get(exc.status or 0, "see the API server's message"),
            ) from None
        except (HTTPError, OSError) as exc:
            raise TargetError(
                "UD-TARGET-K8S-API",
                f"{what}: cannot reach the Kubernetes API at "
                f"{self.api_client.configuration.host}: {type(exc).__name__}",
                "check the kubeconfig, the context and the network path to the cluster",
            ) from None
        return json.loads(resp.data or b"{}")

    def apply(self, manifest: dict[str, Any]) -> dict:
        kind, name, ns = (
            manifest["kind"],
            manifest["metadata"]["name"],
            manifest["metadata"]["namespace"],
        )
        fn = {
            "Deployment": self.apps.patch_namespaced_deployment,
            "Service": self.core.patch_namespaced_service,
            "HorizontalPodAutoscaler": self.autoscaling.patch_namespaced_horizontal_pod_autoscaler,
        }[kind]
        applied = self._call(
            f"applying {kind} {ns}/{name}",
            fn,
            name,
            ns,
            manifest,
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type=_APPLY,
        )
        assert applied is not None  # only a call with missing_ok answers None
        return applied

    def delete(self, manifest: dict[str, Any]) -> None:
        kind, name, ns = (
            manifest["kind"],
            manifest["metadata"]["name"],
            manifest["metadata"]["namespace"],
        )
        fn = {
            "Deployment": self.apps.delete_namespaced_deployment,
            "Service": self.core.delete_namespaced_service,
            "HorizontalPodAutoscaler": self.autoscaling.delete_namespaced_horizontal_pod_autoscaler,
        }[kind]
        self._call(f"deleting {kind} {ns}/{name}", fn, name, ns, missing_ok=True)

    def deployment(self, ns: str, name: str) -> dict | None:
        return self._call(
            f"reading Deployment {ns}/{name}",
            self.apps.read_namespaced_deployment,
            name,
            ns,
            missing_ok=True,
        )

    def replica_sets(self, dep: dict[str, Any]) -> list[dict]:
        """The Deployment's ReplicaSets (its revisions), newest first."""
        ns, uid = dep["metadata"]["namespace"], dep["metadata"].get("uid")
        selector = ",".join(f"{k}={v}" for k, v in dep["spec"]["selector"]["matchLabels"].items())
        found = (
            self._call(
                f"listing ReplicaSets in {ns}",
                self.apps.list_namespaced_replica_set,
                ns,
                label_selector=selector,
            )
            or {}
        )
        owned = [
            rs
            for rs in found.get("items", [])
            if any(o.get("uid") == uid for o in rs["metadata"].get("ownerReferences") or [])
        ]
        return sorted(owned, key=_revision, reverse=True)


class KubernetesTarget(BaseTarget):
    """Deploys `app` units that declare a `kubernetes:` block to a Kubernetes cluster."""

    kinds = ("app",)
    kubernetes_version: str = Field(
        default=DEFAULT_KUBERNETES_VERSION,
        description="The cluster's version: manifests are validated against its schema.",
    )
    kubeconfig: str = Field(
        default="", description="Path of a kubeconfig file; empty: $KUBECONFIG or ~/.kube/config."
    )
    context: str = Field(default="", description="kubeconfig context; empty: the current context.")
    in_cluster: bool = Field(
        default=False, description="Use the pod's service account (Dagster runs on the cluster)."
    )
    rollout_timeout_s: float = Field(
        default=300.0, description="How long a rollout may take before it is rolled back."
    )
    poll_interval_s: float = Field(default=2.0, description="How often the rollout is checked.")
    request_timeout_s: float = Field(default=30.0, description="Time limit of one API request.")
    mlflow_tracking_uri: str = Field(
        default="http://mlflow:5000",
        description="The MLflow server as pods see it: the value of {mlflow_tracking_uri}.",
    )

    # ---- pure ------------------------------------------------------------------------

    def render(self, unit: Unit, env: str, version: str, image: str = "") -> list[dict[str, Any]]:
        return render_manifests(
            unit, env, version, mlflow_tracking_uri=self.mlflow_tracking_uri, image=image
        )

    def schema_errors(self, manifests: list[dict[str, Any]]) -> list[str]:
        return schema_errors(manifests, self.kubernetes_version)

    # ---- the API -----------------------------------------------------------------------

    def _api(self) -> _Api:
        from kubernetes import client, config

        cfg = client.Configuration()
        try:
            if self.in_cluster:
                config.load_incluster_config(client_configuration=cfg)
            else:
                config.load_kube_config(
                    config_file=self.kubeconfig or None,
                    context=self.context or None,
                    client_configuration=cfg,
                )
        except config.ConfigException as exc:
            raise TargetError(
                "UD-TARGET-K8S-CONFIG",
                f"no usable Kubernetes configuration: {exc}",
                "set kubeconfig/context on the KubernetesTarget, or in_cluster when Dagster runs "
                "on the cluster",
            ) from None
        return _Api(client.ApiClient(cfg), self.request_timeout_s)

    def _deployment(self, unit: Unit, env: str, version: str) -> dict[str, Any]:
        _refuse_rollout(unit)
        return next(m for m in self.render(unit, env, version) if m["kind"] == "Deployment")

    def _where(self, unit: Unit, env: str) -> tuple[str, str]:
        meta = self._deployment(unit, env, "")["metadata"]
        return meta["namespace"], meta["name"]

    def _wait(self, api: _Api, ns: str, name: str, log: Log) -> tuple[bool, str]:
        deadline = time.monotonic() + self.rollout_timeout_s
        last = ""
        while True:
            dep = api.deployment(ns, name)
            done, last = rollout_state(dep) if dep else (False, "the Deployment is gone")
            if done or "deadline exceeded" in last or time.monotonic() >= deadline:
                return done, last
            log(f"rollout of {ns}/{name}: {last}")
            time.sleep(self.poll_interval_s)

    def _undo(
        self, api: _Api, unit: Unit, env: str, to_version: str | None, log: Log
    ) -> Deployment:
        """Apply again the pod template of an earlier revision (what `kubectl rollout undo`
        does)."""
        ns, name = self._where(unit, env)
        dep = api.deployment(ns, name)
        if dep is None:
            raise TargetError(
                "UD-TARGET-NO-PREVIOUS",
                f"{unit.name} was never deployed to {env} ({ns}/{name})",
                "nothing to roll back",
            )
        current = _template_version(dep["spec"]["template"])
        revisions = api.replica_sets(dep)
        known = list(dict.fromkeys(_template_version(rs["spec"]["template"]) for rs in revisions))
        if to_version == current:
            raise TargetError(
                "UD-TARGET-SAME-VERSION",
                f"{unit.name} in {env} already runs {current}",
                "give another --to VERSION",
            )
        if to_version:
            found = [
                rs for rs in revisions if _template_version(rs["spec"]["template"]) == to_version
            ]
            if not found:
                raise TargetError(
                    "UD-TARGET-NO-RELEASE",
                    f"{unit.name} in {env} has no revision of version {to_version}",
                    f"known: {', '.join(known) or 'none'}",
                )
        else:
            found = [
                rs
                for rs in revisions
                if _revision(rs) < _revision(dep)
                and _template_version(rs["spec"]["template"]) != current
            ]
            if not found:
                raise TargetError(
                    "UD-TARGET-NO-PREVIOUS",
                    f"{unit.name} in {env} has no earlier revision than {current}",
                    "give --to VERSION",
                )
        template = copy.deepcopy(found[0]["spec"]["template"])
        template["metadata"].get("labels", {}).pop("pod-template-hash", None)
        template["metadata"].pop("creationTimestamp", None)
        version = _template_version(template)
        body = self._deployment(unit, env, version)
        body["spec"]["template"] = template
        at = _now()
        body["metadata"]["annotations"] = {DEPLOYED_AT: at, PREVIOUS: current, ACTION: "rollback"}
        log(
            f"rolling {ns}/{name} back from {current} to {version} (revision {_revision(found[0])})"
        )
        api.apply(body)
        done, last = self._wait(api, ns, name, log)
        if not done:
            raise TargetError(
                "UD-TARGET-ROLLOUT",
                f"rolling {unit.name} in {env} back to {version} did not finish "
                f"in {self.rollout_timeout_s:.0f} s: {last}",
                f"inspect `kubectl -n {ns} rollout status deployment/{name}`",
            )
        return Deployment(
            unit=unit.name,
            env=env,
            version=version,
            deployed_at=at,
            previous_version=current,
            details={"namespace": ns, "name": name},
        )

    # ---- the steps of the DeployTarget contract (base.BaseTarget) ----------------------

    def _deploy(
        self, unit: Unit, env: str, artifact: Artifact, current: Deployment | None, log: Log
    ) -> Deployment:
        _refuse_rollout(unit)
        try:
            manifests = self.render(unit, env, artifact.version, artifact.details.get("image", ""))
        except (
            ConfigError
        ) as exc:  # a deploy fails as a target: recorded as deploy-failed, nothing applied
            raise TargetError(exc.code, exc.message, exc.remediation) from None
        errors = self.schema_errors(manifests)
        if errors:
            raise TargetError(
                "UD-TARGET-K8S-MANIFEST",
                f"{unit.name}: the manifests for {env} do not fit Kubernetes "
                f"{self.kubernetes_version}: {'; '.join(errors[:3])}",
                f"fix the kubernetes: block; see `ud render k8s {unit.name} --env {env}`",
            )
        api = self._api()
        deployment = next(m for m in manifests if m["kind"] == "Deployment")
        ns, name = deployment["metadata"]["namespace"], deployment["metadata"]["name"]
        before = api.deployment(ns, name)
        running = _template_version(before["spec"]["template"]) if before else None
        # Re-deploying what runs (to repair it) must not lose the version to roll back to.
        previous = (
            running
            if before is None or running != artifact.version
            else (before["metadata"].get("annotations") or {}).get(PREVIOUS) or None
        )
        at = _now()
        deployment["metadata"]["annotations"] = {
            DEPLOYED_AT: at,
            PREVIOUS: previous or "",
            ACTION: "deploy",
        }
        for m in manifests:
            api.apply(m)
        log(f"applied {', '.join(m['kind'] for m in manifests)} {ns}/{name} at {artifact.version}")
        done, last = self._wait(api, ns, name, log)
        if done:
            return Deployment(
                unit=unit.name,
                env=env,
                version=artifact.version,
                deployed_at=at,
                previous_version=previous,
                details={
                    "namespace": ns,
                    "name": name,
                    "state": last,
                    "url": f"http://{name}.{ns}.svc",
                },
            )
        why = (
            f"{unit.name} {artifact.version} did not become available in {env} within "
            f"{self.rollout_timeout_s:.0f} s: {last}"
        )
        if before is None:  # nothing ran before: leave nothing behind
            for m in reversed(manifests):
                api.delete(m)
            raise TargetError(
                "UD-TARGET-ROLLOUT",
                why,
                f"nothing runs in {env}; see the pods' events in namespace {ns}",
            )
        if running == artifact.version:
            raise TargetError(
                "UD-TARGET-ROLLOUT",
                why,
                f"{env} ran {running} before and still does; roll it back with "
                f"`ud rollback {unit.name} --env {env}` if it stays unhealthy",
            )
        try:
            back = self._undo(api, unit, env, running, log)
        except TargetError as exc:
            raise TargetError(
                "UD-TARGET-ROLLOUT",
                f"{why}; rolling back to {running} failed too: {exc.message}",
                f"{env} may run a mix of versions: inspect namespace {ns} now",
            ) from None
        raise TargetError(
            "UD-TARGET-ROLLOUT",
            why,
            f"{env} is back on {back.version}; see the pods' events in namespace {ns}",
        )

    def _rollback(
        self, unit: Unit, env: str, to_version: str | None, current: Deployment | None, log: Log
    ) -> Deployment:
        return self._undo(self._api(), unit, env, to_version, log)

    def status(self, unit: Unit, env: str) -> Deployment | None:
        if (
            getattr(unit, "kubernetes", None) is None
        ):  # never deployed here (deploy refuses it): `ud status` shows "-"
            return None
        ns, name = self._where(unit, env)
        dep = self._api().deployment(ns, name)
        if dep is None:
            return None
        notes = dep["metadata"].get("annotations") or {}
        status = dep.get("status") or {}
        return Deployment(
            unit=unit.name,
            env=env,
            version=_template_version(dep["spec"]["template"]),
            deployed_at=notes.get(DEPLOYED_AT) or dep["metadata"].get("creationTimestamp", ""),
            previous_version=notes.get(PREVIOUS) or None,
            details={
                "namespace": ns,
                "name": name,
                "revision": _revision(dep),
                "replicas": dep["spec"].get("replicas"),
                "ready": status.get("readyReplicas") or 0,
                "last_action": notes.get(ACTION, ""),
                "url": f"http://{name}.{ns}.svc",
            },
        )

    def health(self, unit: Unit, env: str) -> Health:
        ns, name = self._where(unit, env)
        dep = self._api().deployment(ns, name)
        if dep is None:
            return Health(False, f"nothing is deployed to {env} ({ns}/{name})")
        want = dep["spec"].get("replicas", 1)
        status = dep.get("status") or {}
        ready = status.get("readyReplicas") or 0
        done, state = rollout_state(dep)
        details = {
            "version": _template_version(dep["spec"]["template"]),
            "replicas": want,
            "ready": ready,
            "rollout": state,
        }
        if want == 0:
            return Health(False, f"{ns}/{name} is scaled to zero", details)
        healthy = done and ready >= want
        return Health(
            healthy,
            f"{ns}/{name}: {ready} of {want} replicas ready" + ("" if done else f"; {state}"),
            details,
        )

    def versions(self, unit: Unit, env: str) -> list[str]:
        ns, name = self._where(unit, env)
        api = self._api()
        dep = api.deployment(ns, name)
        if dep is None:
            return []
        return list(
            dict.fromkeys(_template_version(rs["spec"]["template"]) for rs in api.replica_sets(dep))
        )
