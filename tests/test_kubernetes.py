"""The Kubernetes target: rendering, schema validation and policy for real; the API calls
against a stand-in API server.

There is no cluster here. Rendering, the schemas (kubernetes-validate) and the policy are
the real thing. `FakeApiServer` below is not Kubernetes: it is an HTTP server written for
these tests that answers the few endpoints the target uses, the way the API server does
(paths, status codes, JSON bodies), and plays the Deployment controller's part in a
simplified way (a ReplicaSet and a revision per pod template; pods of an image it is told
are broken never become ready). It lets the real `kubernetes` client run against it, so
the requests the target sends (server-side apply, field manager, the rollback's pod
template) and its rollout and rollback logic are checked; nothing about a real cluster's
admission, scheduling or field ownership is. docs/kubernetes.md says the same.
"""

from __future__ import annotations

import copy
import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator
from urllib.parse import parse_qs, urlparse

import dagster as dg
import kubernetes_validate
import pytest
import yaml

from unified_delivery import Platform
from unified_delivery.errors import ConfigError, TargetError
from unified_delivery.gates import build_gate
from unified_delivery.gates.base import GateContext
from unified_delivery.gates.manifest_policy import policy_findings
from unified_delivery.home import Home
from unified_delivery.loader import load_yaml_unit, unit_from_attributes
from unified_delivery.promotions import promotion
from unified_delivery.targets.base import Artifact
from unified_delivery.targets.kubernetes import (DEFAULT_KUBERNETES_VERSION, KubernetesTarget, dagster_k8s_tags,
                                                 render_manifests, schema_errors, supported_versions)
from unified_delivery.kinds.app.unit import AppUnit, ServiceSpec
from unified_delivery.units import GateSpec, Resources

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "assets" / "units" / "recommendation_api" / "defs.yaml"
SHA1, SHA2, SHA3 = "1" * 40, "2" * 40, "3" * 40


def app(**kubernetes) -> AppUnit:
    spec = {"image": "registry.example.com/svc:{version}", "replicas": 2,
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "128Mi"}},
            **kubernetes}
    return AppUnit(name="svc_api", team="web", repository="{home}/repos/svc.git", kubernetes=spec)


def by_kind(manifests: list[dict]) -> dict[str, dict]:
    return {m["kind"]: m for m in manifests}


# ---- rendering, schemas, policy ------------------------------------------------------------

@pytest.fixture(scope="module")
def reference() -> AppUnit:
    return load_yaml_unit(REFERENCE)


def test_the_reference_app_renders_a_deployment_service_and_autoscaler(reference):
    manifests = KubernetesTarget().render(reference, "production", SHA1)
    kinds = by_kind(manifests)
    assert list(kinds) == ["Service", "Deployment", "HorizontalPodAutoscaler"]
    dep, svc, hpa = kinds["Deployment"], kinds["Service"], kinds["HorizontalPodAutoscaler"]
    assert {m["metadata"]["name"] for m in manifests} == {"recommendation-api"}  # `_` is not allowed in names
    assert {m["metadata"]["namespace"] for m in manifests} == {"production"}
    assert "replicas" not in dep["spec"], "with an autoscaler, the replica count is the autoscaler's"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "recommendation-api"}
    pod = dep["spec"]["template"]
    selector = dep["spec"]["selector"]["matchLabels"]
    assert svc["spec"]["selector"] == selector and selector.items() <= pod["metadata"]["labels"].items()
    assert pod["metadata"]["annotations"]["ud/version"] == SHA1
    (c,) = pod["spec"]["containers"]
    assert c["image"] == f"registry.example.com/recommendation-api:{SHA1}"
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["MODEL_URI"] == "models:/churn_model@production"
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000" and env["HOST"] == "0.0.0.0"
    assert c["command"] == ["python", "app.py", "--port", "8000"]
    assert c["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert c["resources"] == {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}}
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True and c["securityContext"]["privileged"] is False
    # Rendering is pure: the same declaration and version give the same objects.
    assert KubernetesTarget().render(reference, "production", SHA1) == manifests


def test_rendered_manifests_fit_the_schemas_of_the_supported_versions(reference):
    versions = supported_versions()
    assert DEFAULT_KUBERNETES_VERSION in versions
    manifests = KubernetesTarget().render(reference, "staging", SHA1)
    for version in (versions[0], DEFAULT_KUBERNETES_VERSION, versions[-1]):
        assert schema_errors(manifests, version) == [], version
    broken = copy.deepcopy(manifests)
    by_kind(broken)["Deployment"]["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = 7
    by_kind(broken)["Service"]["spec"]["ports"][0]["portt"] = 80
    errors = schema_errors(broken, DEFAULT_KUBERNETES_VERSION)
    assert len(errors) == 2
    assert any("Deployment/recommendation-api: spec.template.spec.containers.0.imagePullPolicy" in e for e in errors)
    assert any("Service/recommendation-api" in e and "portt" in e for e in errors)
    with pytest.raises(ConfigError) as old:
        schema_errors(manifests, "1.12")
    assert old.value.code == "UD-K8S-VERSION" and versions[0] in old.value.remediation


def test_gpus_replicas_secrets_and_namespaces_follow_the_declaration():
    unit = app(replicas=3, namespace="team-web-{env}", secrets=["svc-db"], env={"MODE": "{env}"},
               resources={"limits": {"cpu": "2", "memory": "4Gi"}, "gpu": 1})
    kinds = by_kind(render_manifests(unit, "staging", "v7", mlflow_tracking_uri="http://mlflow.mlops:5000"))
    assert list(kinds) == ["Service", "Deployment"]
    dep = kinds["Deployment"]
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert dep["spec"]["replicas"] == 3 and dep["metadata"]["namespace"] == "team-web-staging"
    assert c["resources"] == {"limits": {"cpu": "2", "memory": "4Gi", "nvidia.com/gpu": "1"}}
    assert c["envFrom"] == [{"secretRef": {"name": "svc-db"}}]
    assert {"name": "MODE", "value": "staging"} in c["env"]
    assert schema_errors(list(kinds.values()), DEFAULT_KUBERNETES_VERSION) == []
    # Label values Kubernetes would refuse (a `+`, a space) stay out of the labels; the version stays annotated.
    odd = unit.model_copy(update={"team": "data science"})
    pod = by_kind(render_manifests(odd, "staging", "1.2+build", mlflow_tracking_uri=""))["Deployment"]["spec"]["template"]
    assert "app.kubernetes.io/version" not in pod["metadata"]["labels"] and "ud/team" not in pod["metadata"]["labels"]
    assert pod["metadata"]["annotations"]["ud/version"] == "1.2+build"


def test_setup_steps_become_init_containers_and_a_state_dir_has_no_value_in_a_cluster():
    unit = app().model_copy(update={"service": ServiceSpec(
        command=["gunicorn", "app:app"], setup=["flask --app app init-db", ["alembic", "upgrade", "{version}"]])})
    pod = by_kind(render_manifests(unit, "staging", "v7", mlflow_tracking_uri=""))["Deployment"]["spec"]["template"]
    first, second = pod["spec"]["initContainers"]
    (main,) = pod["spec"]["containers"]
    assert first["command"] == ["/bin/sh", "-c", "flask --app app init-db"] and second["command"][-1] == "v7"
    assert first["image"] == main["image"] and first["env"] == main["env"] and "readinessProbe" not in first
    assert first["securityContext"] == main["securityContext"] and first["volumeMounts"] == main["volumeMounts"]
    assert schema_errors([by_kind(render_manifests(unit, "staging", "v7", mlflow_tracking_uri=""))["Deployment"]],
                         DEFAULT_KUBERNETES_VERSION) == []
    stateful = unit.model_copy(update={"service": ServiceSpec(env={"DB": "{state_dir}/app.db"})})
    with pytest.raises(ConfigError, match=r"uses \{state_dir\}, which has no value in a cluster"):
        render_manifests(stateful, "staging", "v7", mlflow_tracking_uri="")


def test_declarations_the_cluster_would_refuse_are_refused_when_they_load(tmp_path):
    def load(kubernetes: dict):
        return unit_from_attributes("app", {"name": "svc", "team": "web", "repository": "{home}/r.git",
                                            "kubernetes": kubernetes}, "svc.yaml", tmp_path)

    with pytest.raises(ConfigError) as quantity:
        load({"image": "x", "resources": {"limits": {"cpu": "one"}}})
    assert quantity.value.code == "UD-CONFIG-UNIT"
    assert "kubernetes.resources.limits.cpu" in quantity.value.message and "'one'" in quantity.value.message
    with pytest.raises(ConfigError) as hpa:
        load({"image": "x", "hpa": {"min_replicas": 4, "max_replicas": 2}})
    assert "kubernetes.hpa" in hpa.value.message and "above max_replicas" in hpa.value.message
    with pytest.raises(ConfigError) as no_request:
        load({"image": "x", "hpa": {}, "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}})
    assert "resources.requests.cpu" in no_request.value.message
    with pytest.raises(ConfigError) as typo:
        load({"image": "x", "replica": 2})
    assert "kubernetes.replica" in typo.value.message

    homeless = AppUnit(name="svc", team="web", repository="{home}/r.git", service={"env": {"DATA": "{home}/data"}},
                       kubernetes={"image": "x"})
    with pytest.raises(ConfigError) as home:
        KubernetesTarget().render(homeless, "staging", "v1")
    assert home.value.code == "UD-CONFIG-K8S" and "{home}" in home.value.message
    with pytest.raises(ConfigError) as bare:
        KubernetesTarget().render(AppUnit(name="svc", team="web", repository="{home}/r.git"), "staging", "v1")
    assert bare.value.code == "UD-CONFIG-K8S" and "kubernetes:" in bare.value.remediation


def _gate_result(unit: AppUnit, env: str = "production"):
    gate = build_gate(GateSpec(type="manifest-policy", stage="staging"), unit)
    ctx = GateContext(unit=unit, stage="staging", guards=env, version=SHA1, artifact=None, target=KubernetesTarget(),
                      home=Home(Path("/nonexistent")), log=lambda _: None)
    return gate.evaluate(ctx)


def test_a_rollout_renders_an_argo_rollout_with_its_steps_analysis_and_services():
    unit = AppUnit(name="svc_api", team="web", repository="/x",
                   kubernetes=app(hpa={"min_replicas": 2, "max_replicas": 6}).kubernetes,
                   rollout={"steps": [{"weight": 10, "pause": "30s"}, {"weight": 50, "pause": "2m"}],
                            "analysis": {"error_rate": 0.02, "latency_p95_ms": 250, "on_inconclusive": "promote"}})
    manifests = render_manifests(unit, "production", SHA1, mlflow_tracking_uri="http://mlflow:5000")
    assert [m["kind"] for m in manifests] == ["Service", "Service", "AnalysisTemplate", "Rollout", "HorizontalPodAutoscaler"]
    assert schema_errors(manifests, DEFAULT_KUBERNETES_VERSION) == []  # Argo's own CRD schemas, strict
    kinds = by_kind(manifests)
    canary = kinds["Rollout"]["spec"]["strategy"]["canary"]
    assert canary["steps"] == [{"setWeight": 10}, {"pause": {"duration": "30s"}},
                               {"setWeight": 50}, {"pause": {"duration": "120s"}}]
    assert (canary["stableService"], canary["canaryService"]) == ("svc-api", "svc-api-canary")
    assert canary["analysis"]["templates"] == [{"templateName": "svc-api-canary"}]
    metrics = {m["name"]: m for m in kinds["AnalysisTemplate"]["spec"]["metrics"]}
    assert metrics["error-rate"]["failureCondition"] == "result[0] > 0.02"
    assert metrics["error-rate"]["successCondition"].startswith("isNaN(result[0])")  # no traffic passes
    assert 'service="svc-api-canary"' in metrics["latency-p95-ms"]["provider"]["prometheus"]["query"]
    assert kinds["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["kind"] == "Rollout"
    assert kinds["Rollout"]["spec"]["template"]["metadata"]["annotations"]["ud/version"] == SHA1
    # what Argo's CRD does not declare, and a pod template Kubernetes would refuse, are errors
    broken = copy.deepcopy(manifests)
    rollout = next(m for m in broken if m["kind"] == "Rollout")
    rollout["spec"]["strategy"]["canary"]["stepz"] = []
    rollout["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "http"
    errors = schema_errors(broken, DEFAULT_KUBERNETES_VERSION)
    assert any("'stepz' was unexpected" in e for e in errors) and any("containerPort" in e for e in errors), errors
    # the policy gate reads the Rollout's pods as a Deployment's
    root = AppUnit(name="svc_api", team="web", repository="/x", kubernetes=app(run_as_user=0).kubernetes,
                   rollout={"steps": [{"weight": 20}]})
    assert any(f["rule"] == "root" and "Rollout" in f["object"]
               for f in policy_findings(render_manifests(root, "production", SHA1, mlflow_tracking_uri="x")))
    with pytest.raises(TargetError) as refused:  # rendered, not yet applied by this target
        KubernetesTarget().deploy(unit, "production", Artifact(unit="svc_api", kind="app", version=SHA1, location="/x"))
    assert refused.value.code == "UD-TARGET-K8S-ROLLOUT"


def test_the_policy_gate_passes_the_reference_app(reference):
    result = _gate_result(reference)
    assert (result.passed, result.code) == (True, "UD-GATE-POLICY-OK")
    assert result.metadata["manifests"] == ["Service/recommendation-api", "Deployment/recommendation-api",
                                            "HorizontalPodAutoscaler/recommendation-api"]
    assert result.metadata["kubernetes_version"] == DEFAULT_KUBERNETES_VERSION


def test_the_policy_gate_refuses_root_missing_limits_and_privileged_pods():
    for unit, rule in ((app(run_as_user=0), "root"), (app(resources={"requests": {"cpu": "1"}}), "limits"),
                       (app(privileged=True), "privileged")):
        result = _gate_result(unit)
        assert (result.passed, result.code) == (False, "UD-GATE-POLICY-MANIFEST"), rule
        assert [f["rule"] for f in result.metadata["findings"]] == [rule]
        assert rule in result.message and "ud render k8s svc_api --env production" in result.remediation
    everything = _gate_result(app(run_as_user=0, privileged=True, resources={}))
    assert sorted(f["rule"] for f in everything.metadata["findings"]) == ["limits", "privileged", "root"]


def test_policy_rules_read_pod_and_container_security_contexts():
    def pod(spec: dict, kind: str = "Deployment") -> dict:
        body = {"containers": [{"name": "c", "image": "x", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}, **spec}]}
        if kind == "CronJob":
            return {"kind": kind, "metadata": {"name": "j"}, "spec": {"jobTemplate": {"spec": {"template": {"spec": body}}}}}
        return {"kind": kind, "metadata": {"name": "d"}, "spec": {"template": {"spec": body}}}

    def rules(manifest: dict) -> list[str]:
        return sorted(f["rule"] for f in policy_findings([manifest]))

    assert rules(pod({"securityContext": {"runAsUser": 1000}})) == []
    assert rules(pod({})) == ["root"]  # an image's default user may be root: non-root must be said
    assert rules(pod({"securityContext": {"runAsNonRoot": True, "runAsUser": 0}})) == ["root"]
    assert rules(pod({"securityContext": {"runAsUser": 1, "allowPrivilegeEscalation": True}})) == ["privileged"]
    assert rules(pod({"securityContext": {"runAsUser": 1, "capabilities": {"add": ["SYS_ADMIN"]}}}, "CronJob")) == ["privileged"]
    host = pod({"securityContext": {"runAsUser": 1}})
    host["spec"]["template"]["spec"]["hostNetwork"] = True
    assert rules(host) == ["privileged"]
    assert policy_findings([{"kind": "Service", "metadata": {"name": "s"}, "spec": {}}]) == []


def test_the_policy_gate_needs_a_kubernetes_block_and_becomes_a_blocking_check(tmp_path):
    with pytest.raises(ConfigError) as missing:
        build_gate(GateSpec(type="manifest-policy"), AppUnit(name="svc", team="web", repository="{home}/r.git"))
    assert missing.value.code == "UD-CONFIG-GATE" and "kubernetes:" in missing.value.message
    unit = app().model_copy(update={"gates": [GateSpec(type="manifest-policy", stage="staging")]})
    graph = Platform([unit]).definitions().resolve_asset_graph()
    check = dg.AssetCheckKey(dg.AssetKey(["svc_api", "staging"]), "manifest_policy")
    assert check in graph.asset_check_keys and graph.get_check_spec(check).blocking


def test_declared_step_resources_reach_dagster_k8s_on_the_build_asset_and_its_run():
    from dagster_k8s.job import get_user_defined_k8s_config

    resources = {"requests": {"cpu": "2", "memory": "8Gi"}, "limits": {"cpu": "4", "memory": "16Gi"}, "gpu": 1}
    unit = app().model_copy(update={"resources": Resources(**resources)})
    platform = Platform([unit])
    defs = platform.definitions()
    expected = {"requests": {"cpu": "2", "memory": "8Gi"}, "limits": {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"}}
    # On the build run's tags (K8sRunLauncher sizes the run pod from them), as JSON like any tag
    build = promotion(platform, platform.unit("svc_api"), "staging")
    assert get_user_defined_k8s_config(build.tags()).container_config["resources"] == expected
    assert build.tags()["ud/unit"] == "svc_api"
    assert "dagster-k8s/config" not in defs.resolve_job_def("ud_promote_staging").tags  # not every unit's
    # The deploy-only run gets none: it must not hold a GPU to move a version.
    assert "dagster-k8s/config" not in promotion(platform, platform.unit("svc_api"), "production").tags()
    graph = defs.resolve_asset_graph()
    candidate = graph.get(dg.AssetKey(["svc_api", "candidate"])).assets_def
    assert get_user_defined_k8s_config(dict(candidate.op.tags)).container_config["resources"] == expected
    assert dagster_k8s_tags(app()) == {}


def test_ud_render_k8s_prints_manifests_kubernetes_validate_accepts(run_ud):
    proc = run_ud("render", "k8s", "recommendation_api", "--env", "production", "--version", SHA2)
    assert proc.returncode == 0, proc.stderr
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    assert [d["kind"] for d in docs] == ["Service", "Deployment", "HorizontalPodAutoscaler"]
    for doc in docs:
        kubernetes_validate.validate(doc, DEFAULT_KUBERNETES_VERSION, strict=True)
    assert f"recommendation-api:{SHA2}" in proc.stdout and "&id" not in proc.stdout
    assert proc.stdout.startswith(f"# recommendation_api in production at {SHA2}; version from --version")



def test_ud_render_k8s_refuses_a_unit_without_a_kubernetes_block(tmp_path, monkeypatch, capsys):
    from unified_delivery.cli import main

    monkeypatch.setenv("UD_PROJECT", str(ROOT))
    monkeypatch.setenv("UD_HOME", str(tmp_path / "home"))
    assert main(["render", "k8s", "customer_features", "--env", "production", "--json"]) == 2
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "UD-CONFIG-K8S"
    assert main(["render", "k8s", "recommendation_api", "--env", "nowhere"]) == 2
    assert "UD-UNKNOWN-ENV" in capsys.readouterr().err


# ---- the API calls, against a stand-in API server -----------------------------------------

def _status(code: int, reason: str, message: str) -> dict:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "reason": reason, "code": code}


class FakeApiServer:
    """Stand-in for the Kubernetes API: see the module docstring for what it is and is not."""

    def __init__(self):
        self.objects: dict[tuple[str, str, str], dict] = {}
        self.replica_sets: list[dict] = []
        self.requests: list[dict] = []
        self.broken_images: set[str] = set()
        self.refuse: dict[str, tuple[int, str]] = {}  # "PATCH Deployment" -> (status, reason)
        self.lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"api": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def applied(self, kind: str) -> list[dict]:
        return [r["body"] for r in self.requests if r["method"] == "PATCH" and r["kind"] == kind]

    def handle(self, method: str, path: str, query: dict, headers: dict, body: dict | None) -> tuple[int, dict]:
        parts = path.strip("/").split("/")
        # /api/v1/namespaces/NS/services/NAME or /apis/GROUP/VERSION/namespaces/NS/PLURAL[/NAME]
        rest = parts[2:] if parts[0] == "api" else parts[3:]
        ns, plural, name = rest[1], rest[2], (rest[3] if len(rest) > 3 else None)
        kind = {"deployments": "Deployment", "services": "Service", "replicasets": "ReplicaSet",
                "horizontalpodautoscalers": "HorizontalPodAutoscaler"}[plural]
        self.requests.append({"method": method, "kind": kind, "path": path, "query": query, "body": body,
                              "content_type": headers.get("content-type"), "auth": headers.get("authorization")})
        if f"{method} {kind}" in self.refuse:
            code, reason = self.refuse[f"{method} {kind}"]
            return code, _status(code, reason, f"{kind} {name} is {reason.lower()}")
        key = (kind, ns, name)
        if kind == "ReplicaSet":
            selector = dict(p.split("=") for p in query["labelSelector"][0].split(","))
            items = [rs for rs in self.replica_sets if rs["metadata"]["namespace"] == ns
                     and selector.items() <= rs["metadata"]["labels"].items()]
            return 200, {"kind": "ReplicaSetList", "apiVersion": "apps/v1", "items": items}
        if method == "GET":
            return (200, self.objects[key]) if key in self.objects else (404, _status(404, "NotFound", f"{name} not found"))
        if method == "DELETE":
            if self.objects.pop(key, None) is None:
                return 404, _status(404, "NotFound", f"{name} not found")
            return 200, {"kind": "Status", "apiVersion": "v1", "status": "Success"}
        assert method == "PATCH"
        if kind != "Deployment":
            self.objects[key] = {**body, "metadata": {**body["metadata"], "uid": str(uuid.uuid4())}}
            return 200, self.objects[key]
        return 200, self._apply_deployment(key, body)

    def _apply_deployment(self, key: tuple[str, str, str], body: dict) -> dict:
        """What the API server and the Deployment controller make of an applied Deployment."""
        old = self.objects.get(key)
        dep = copy.deepcopy(body)
        meta = dep["metadata"]
        meta["uid"] = old["metadata"]["uid"] if old else str(uuid.uuid4())
        meta["creationTimestamp"] = old["metadata"]["creationTimestamp"] if old else "2026-11-21T10:00:00Z"
        dep["spec"].setdefault("replicas", old["spec"]["replicas"] if old else 1)
        changed = old is None or old["spec"] != dep["spec"]
        meta["generation"] = (old["metadata"]["generation"] + changed) if old else 1
        template = dep["spec"]["template"]
        mine = [rs for rs in self.replica_sets if rs["metadata"]["ownerReferences"][0]["uid"] == meta["uid"]]

        def bare(t: dict) -> dict:
            t = copy.deepcopy(t)
            t["metadata"]["labels"].pop("pod-template-hash", None)
            return t

        same = next((rs for rs in mine if bare(rs["spec"]["template"]) == template), None)
        top = max((int(rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]) for rs in mine), default=0)
        current = int((old or {}).get("metadata", {}).get("annotations", {}).get("deployment.kubernetes.io/revision", 0))
        if same is None:
            rs_hash = uuid.uuid4().hex[:10]
            rs_template = copy.deepcopy(template)
            rs_template["metadata"]["labels"]["pod-template-hash"] = rs_hash
            same = {"metadata": {"name": f"{meta['name']}-{rs_hash}", "namespace": meta["namespace"],
                                 "labels": rs_template["metadata"]["labels"], "annotations": {},
                                 "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": meta["name"],
                                                      "uid": meta["uid"], "controller": True}]},
                    "spec": {"template": rs_template}}
            self.replica_sets.append(same)
        revision = current if current and same["metadata"]["annotations"].get(
            "deployment.kubernetes.io/revision") == str(current) else top + 1
        same["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = str(revision)
        meta["annotations"] = {**(meta.get("annotations") or {}), "deployment.kubernetes.io/revision": str(revision)}
        want = dep["spec"]["replicas"]
        image = template["spec"]["containers"][0]["image"]
        old_ready = (old or {}).get("status", {}).get("readyReplicas", 0)
        if image in self.broken_images:  # new pods never pass their readiness probe
            dep["status"] = {"observedGeneration": meta["generation"], "replicas": old_ready + 1, "updatedReplicas": 1,
                             "readyReplicas": old_ready, "availableReplicas": old_ready, "unavailableReplicas": 1}
        else:
            dep["status"] = {"observedGeneration": meta["generation"], "replicas": want, "updatedReplicas": want,
                             "readyReplicas": want, "availableReplicas": want,
                             "conditions": [{"type": "Available", "status": "True"}]}
        self.objects[key] = dep
        return dep


class _Handler(BaseHTTPRequestHandler):
    api: FakeApiServer

    def _serve(self) -> None:
        url = urlparse(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        with self.api.lock:
            headers = {k.lower(): v for k, v in self.headers.items()}
            code, answer = self.api.handle(self.command, url.path, parse_qs(url.query), headers, body)
        data = json.dumps(answer).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_PATCH = do_DELETE = _serve

    def log_message(self, *args) -> None:
        return None


@pytest.fixture
def cluster(tmp_path) -> Iterator[tuple[FakeApiServer, KubernetesTarget]]:
    api = FakeApiServer()
    api.thread.start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": api.url}}],
        "users": [{"name": "ud", "user": {"token": "t0ken"}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "ud"}}]}))
    target = KubernetesTarget(kubeconfig=str(kubeconfig), rollout_timeout_s=1.0, poll_interval_s=0.05)
    try:
        yield api, target
    finally:
        api.server.shutdown()
        api.server.server_close()


def artifact(version: str) -> Artifact:
    return Artifact(unit="svc_api", kind="app", version=version)


def test_deploy_applies_server_side_and_waits_for_the_rollout(cluster):
    api, target = cluster
    unit = app(hpa={"min_replicas": 2, "max_replicas": 4})
    dep = target.deploy(unit, "staging", artifact(SHA1))
    assert (dep.version, dep.previous_version) == (SHA1, None)

    patches = [r for r in api.requests if r["method"] == "PATCH"]
    assert [r["kind"] for r in patches] == ["Service", "Deployment", "HorizontalPodAutoscaler"]
    for r in patches:
        assert r["content_type"] == "application/apply-patch+yaml"
        # Python's client sends force=True; apimachinery reads any value but "0"/"false" as true.
        assert r["query"] == {"fieldManager": ["unified-delivery"], "force": ["True"]}
        assert r["auth"] == "Bearer t0ken"
        assert schema_errors([r["body"]], DEFAULT_KUBERNETES_VERSION) == []
    sent = api.applied("Deployment")[0]
    rendered = target.render(unit, "staging", SHA1)[1]
    assert sent["spec"] == rendered["spec"]
    assert sent["metadata"]["annotations"]["ud/deployed-at"] == dep.deployed_at
    assert patches[1]["path"] == "/apis/apps/v1/namespaces/staging/deployments/svc-api"

    status = target.status(unit, "staging")
    assert (status.version, status.previous_version, status.details["last_action"]) == (SHA1, None, "deploy")
    health = target.health(unit, "staging")
    assert health.healthy and health.message == "staging/svc-api: 1 of 1 replicas ready"
    assert target.status(unit, "production") is None and not target.health(unit, "production").healthy


def test_rollback_applies_the_previous_revisions_pod_template(cluster):
    api, target = cluster
    unit = app()
    target.deploy(unit, "staging", artifact(SHA1))
    second = target.deploy(unit, "staging", artifact(SHA2))
    assert second.previous_version == SHA1
    assert target.versions(unit, "staging") == [SHA2, SHA1]

    back = target.rollback(unit, "staging")
    assert (back.version, back.previous_version) == (SHA1, SHA2)
    applied = api.applied("Deployment")[-1]
    template = applied["spec"]["template"]
    assert "pod-template-hash" not in template["metadata"]["labels"]
    assert template == target.render(unit, "staging", SHA1)[1]["spec"]["template"]
    assert applied["metadata"]["annotations"]["ud/action"] == "rollback"
    assert schema_errors([applied], DEFAULT_KUBERNETES_VERSION) == []
    status = target.status(unit, "staging")
    assert (status.version, status.previous_version, status.details["last_action"]) == (SHA1, SHA2, "rollback")
    assert status.details["revision"] == 3 and len(api.replica_sets) == 2  # the old ReplicaSet, scaled up again
    assert target.health(unit, "staging").healthy

    assert target.rollback(unit, "staging", to_version=SHA2).version == SHA2
    with pytest.raises(TargetError) as same:
        target.rollback(unit, "staging", to_version=SHA2)
    assert same.value.code == "UD-TARGET-SAME-VERSION"
    with pytest.raises(TargetError) as unknown:
        target.rollback(unit, "staging", to_version=SHA3)
    assert unknown.value.code == "UD-TARGET-NO-RELEASE" and SHA1 in unknown.value.remediation
    with pytest.raises(TargetError) as never:
        target.rollback(unit, "production")
    assert never.value.code == "UD-TARGET-NO-PREVIOUS"


def test_a_rollout_that_does_not_finish_is_rolled_back(cluster):
    api, target = cluster
    unit = app()
    target.deploy(unit, "staging", artifact(SHA1))
    api.broken_images.add(f"registry.example.com/svc:{SHA2}")
    with pytest.raises(TargetError) as failed:
        target.deploy(unit, "staging", artifact(SHA2))
    assert failed.value.code == "UD-TARGET-ROLLOUT"
    assert failed.value.message.endswith("1 of 2 replicas updated") and SHA1 in failed.value.remediation
    assert [d["spec"]["template"]["metadata"]["annotations"]["ud/version"] for d in api.applied("Deployment")] == \
        [SHA1, SHA2, SHA1]
    status = target.status(unit, "staging")
    assert (status.version, status.details["last_action"]) == (SHA1, "rollback")
    assert target.health(unit, "staging").healthy


def test_a_first_rollout_that_does_not_finish_leaves_nothing_behind(cluster):
    api, target = cluster
    unit = app()
    api.broken_images.add(f"registry.example.com/svc:{SHA1}")
    with pytest.raises(TargetError) as failed:
        target.deploy(unit, "staging", artifact(SHA1))
    assert failed.value.code == "UD-TARGET-ROLLOUT" and "nothing runs in staging" in failed.value.remediation
    assert sorted(r["kind"] for r in api.requests if r["method"] == "DELETE") == ["Deployment", "Service"]
    assert target.status(unit, "staging") is None


def test_api_refusals_and_an_unreachable_cluster_are_target_errors(cluster, tmp_path):
    api, target = cluster
    api.refuse["PATCH Deployment"] = (403, "Forbidden")
    with pytest.raises(TargetError) as forbidden:
        target.deploy(app(), "staging", artifact(SHA1))
    assert forbidden.value.code == "UD-TARGET-K8S-API" and "403" in forbidden.value.message
    assert "RBAC" in forbidden.value.remediation

    api.server.shutdown()
    api.server.server_close()
    with pytest.raises(TargetError) as unreachable:
        target.status(app(), "staging")
    assert unreachable.value.code == "UD-TARGET-K8S-API" and "cannot reach" in unreachable.value.message

    lost = KubernetesTarget(kubeconfig=str(tmp_path / "missing"))
    with pytest.raises(TargetError) as config:
        lost.status(app(), "staging")
    assert config.value.code == "UD-TARGET-K8S-CONFIG"


# ---- deploy/: what can be checked without Docker, Helm or a cluster ------------------------

def test_deploy_files_agree_with_the_repository_and_the_schemas():
    deploy = ROOT / "deploy"
    dockerfile = (deploy / "Dockerfile").read_text().splitlines()
    for line in dockerfile:
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), f"the image copies {source}, which is not in the repository"
    cmd = json.loads(next(line for line in dockerfile if line.startswith("CMD "))[4:])
    module = cmd[cmd.index("--module-name") + 1]
    workspace = yaml.safe_load((ROOT / "workspace.yaml").read_text())
    assert module == workspace["load_from"][0]["python_module"]["module_name"] == "assets.definitions"

    values = yaml.safe_load((deploy / "helm" / "values.yaml").read_text())
    (location,) = values["dagster-user-deployments"]["deployments"]
    assert location["dagsterApiGrpcArgs"] == ["--module-name", module]
    assert f"EXPOSE {location['port']}" in dockerfile
    user = next(line for line in dockerfile if line.startswith("USER ")).split()[1]
    assert location["podSecurityContext"]["runAsUser"] == int(user) != 0
    assert values["runLauncher"]["type"] == "K8sRunLauncher" and values["postgresql"]["enabled"] is False
    assert values["dagsterDaemon"]["enabled"] is True

    objects = [d for d in yaml.safe_load_all((deploy / "rbac.yaml").read_text()) if d]
    assert schema_errors(objects, DEFAULT_KUBERNETES_VERSION) == []
    resources = {r for d in objects if d["kind"] == "Role" for rule in d["rules"] for r in rule["resources"]}
    assert resources == {"deployments", "replicasets", "services", "horizontalpodautoscalers"}


def test_an_app_without_a_kubernetes_block_has_no_status_there():
    """`ud status` lists every app; one the cluster never runs shows "-" instead of failing the command."""
    assert KubernetesTarget().status(AppUnit(name="svc", team="web", repository="{home}/r.git"), "staging") is None
