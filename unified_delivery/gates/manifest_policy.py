"""Manifest policy: what the Kubernetes target would apply to the guarded environment fits
the cluster's schema, and no pod runs as root, without resource limits or privileged.

The manifests are rendered here for the version under review, so the gate judges the
exact objects the deploy step applies.
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from ..kinds.app.unit import AppUnit
from ..units import Unit
from .base import Gate, GateContext, GateResult, GateSettings

REQUIRED_LIMITS = ("cpu", "memory")


def _pod_specs(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    spec = manifest.get("spec") or {}
    if manifest.get("kind") == "Pod":
        return [spec]
    if manifest.get("kind") == "CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    template = spec.get("template")
    return [template.get("spec") or {}] if isinstance(template, dict) else []


def policy_findings(manifests: list[dict[str, Any]]) -> list[dict[str, str]]:
    """One finding per rule broken: `root`, `limits` or `privileged`, naming object and
    container."""
    found = []
    for m in manifests:
        where = f"{m.get('kind')}/{(m.get('metadata') or {}).get('name')}"
        for pod in _pod_specs(m):
            pod_sc = pod.get("securityContext") or {}
            for ns in ("hostNetwork", "hostPID", "hostIPC"):
                if pod.get(ns):
                    found.append(
                        {
                            "rule": "privileged",
                            "object": where,
                            "container": "",
                            "message": f"{where} shares the node's namespaces ({ns})",
                        }
                    )
            for c in [*pod.get("initContainers", []), *pod.get("containers", [])]:
                sc = c.get("securityContext") or {}
                user = sc.get("runAsUser", pod_sc.get("runAsUser"))
                non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
                if user == 0 or not (non_root is True or (user or 0) > 0):
                    found.append(
                        {
                            "rule": "root",
                            "object": where,
                            "container": c.get("name", ""),
                            "message": f"{where} container {c.get('name')} may run as root "
                            f"(runAsUser {user}, runAsNonRoot {non_root})",
                        }
                    )
                limits = (c.get("resources") or {}).get("limits") or {}
                missing = [r for r in REQUIRED_LIMITS if r not in limits]
                if missing:
                    found.append(
                        {
                            "rule": "limits",
                            "object": where,
                            "container": c.get("name", ""),
                            "message": (
                                f"{where} container {c.get('name')} has no {' and '.join(missing)} "
                                "limit"
                            ),
                        }
                    )
                added = {cap.upper() for cap in (sc.get("capabilities") or {}).get("add") or []}
                if (
                    sc.get("privileged")
                    or sc.get("allowPrivilegeEscalation") is True
                    or added & {"SYS_ADMIN", "ALL"}
                ):
                    found.append(
                        {
                            "rule": "privileged",
                            "object": where,
                            "container": c.get("name", ""),
                            "message": (
                                f"{where} container {c.get('name')} is privileged or may escalate"
                            ),
                        }
                    )
    return found


def unpinned_images(manifests: list[dict[str, Any]]) -> list[dict[str, str]]:
    """One finding (rule `digest`) per container that runs an image by tag, not by digest."""
    from ..kinds.app.image import pinned

    found = []
    for m in manifests:
        where = f"{m.get('kind')}/{(m.get('metadata') or {}).get('name')}"
        for pod in _pod_specs(m):
            for c in [*pod.get("initContainers", []), *pod.get("containers", [])]:
                ref = c.get("image") or ""
                if not pinned(ref):
                    found.append(
                        {
                            "rule": "digest",
                            "object": where,
                            "container": c.get("name", ""),
                            "image": ref,
                            "message": f"{where} container {c.get('name')} runs {ref} by tag, "
                            "not by digest",
                        }
                    )
    return found


def builds_images(ctx: GateContext, recorded: dict[str, str]) -> bool:
    """Whether the unit ships images: the ledger has one of its candidates built as an image, or
    this candidate has a Containerfile (built, or skipped where the tools are missing)."""
    details = ctx.artifact.details if ctx.artifact else {}
    return bool(recorded or details.get("image") or details.get("image_skipped"))


class ManifestPolicySettings(GateSettings):
    kubernetes_version: str = ""  # empty: the Kubernetes target's (or its default)


class ManifestPolicyGate(Gate[ManifestPolicySettings]):
    type = "manifest-policy"
    family = "manifest-policy"
    kinds = ("app",)
    Settings = ManifestPolicySettings

    def validate_for(self, unit: Unit) -> None:
        if not isinstance(unit, AppUnit) or unit.kubernetes is None:
            raise ConfigError(
                "UD-CONFIG-GATE",
                f"unit {unit.name}: gate {self.name!r} needs a kubernetes: block to render",
                "add a `kubernetes:` block to the unit (`kubernetes: {image: ...}`, or "
                "`kubernetes: {}` for an app with a Containerfile), or remove the gate",
            )

    def evaluate(self, ctx: GateContext) -> GateResult:
        from ..kinds.app.image import recorded_images
        from ..targets.kubernetes import KubernetesTarget, schema_errors

        guarded = ctx.target_in(ctx.guards)  # what the guarded environment's target would apply
        target = guarded if isinstance(guarded, KubernetesTarget) else KubernetesTarget()
        version = self.settings.kubernetes_version or target.kubernetes_version
        recorded = recorded_images(ctx.ledger, ctx.unit.name) if ctx.ledger is not None else {}
        # The candidate's image, or (a later stage, no artifact) the one its candidate recorded.
        image = (ctx.artifact.details.get("image") or "") if ctx.artifact else ""
        image = image or recorded.get(ctx.version, "")
        try:
            manifests = target.render(ctx.unit, ctx.guards, ctx.version, image)
        except ConfigError as exc:  # nothing to render (no image for this version): refused
            return GateResult(False, exc.code, exc.message, exc.remediation, {"env": ctx.guards})
        unpinned = unpinned_images(manifests) if builds_images(ctx, recorded) else []
        if unpinned:
            skipped = ctx.artifact.details.get("image_skipped") if ctx.artifact else None
            return GateResult(
                False,
                "UD-GATE-MANIFEST-DIGEST",
                f"{ctx.unit.name} ships images, and the manifests for {ctx.guards} run "
                f"{unpinned[0]['image']} by tag, not by digest: a tag can move, so the cluster "
                f"would not run what the gates judged"
                + (f" (version {ctx.version[:12]} has no image: {skipped})" if skipped else ""),
                "leave kubernetes.image out of the unit (each version then runs the image its "
                "candidate was built as, by digest) and build the version where buildah and "
                f"skopeo are installed; see `ud render k8s {ctx.unit.name} --env {ctx.guards}`",
                {"env": ctx.guards, "findings": unpinned, "image_skipped": skipped},
            )
        schema = schema_errors(manifests, version)
        policy = policy_findings(manifests)
        problems = [f"schema: {e}" for e in schema] + [
            f"{f['rule']}: {f['message']}" for f in policy
        ]
        meta = {
            "kubernetes_version": version,
            "env": ctx.guards,
            "manifests": [f"{m['kind']}/{m['metadata']['name']}" for m in manifests],
            "schema_errors": schema,
            "findings": policy,
        }
        if problems:
            return GateResult(
                False,
                "UD-GATE-POLICY-MANIFEST",
                f"{len(problems)} problem(s) in the manifests for {ctx.guards}: "
                f"{'; '.join(problems[:3])}",
                "fix the unit's kubernetes: block (run_as_user not 0, resources.limits cpu and "
                f"memory, privileged false); see `ud render k8s {ctx.unit.name} --env "
                f"{ctx.guards}`",
                meta,
            )
        return GateResult(
            True,
            "UD-GATE-POLICY-OK",
            f"{len(manifests)} manifests for {ctx.guards} fit Kubernetes {version} "
            "and the policy (non-root, limits, unprivileged)",
            "",
            meta,
        )
