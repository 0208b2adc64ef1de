"""`ud render k8s UNIT --env ENV`: the manifests the Kubernetes target would apply, checked
against the cluster version's schema and the manifest policy, without a cluster."""

from __future__ import annotations

import re

import yaml

from ..errors import UDError


class _NoAliases(yaml.SafeDumper):
    def ignore_aliases(
        self, data
    ) -> bool:  # kubectl and humans read plain YAML better than anchors
        return True


VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")  # a commit, a tag, a model version


def _version(platform, unit, given: str) -> tuple[str, str]:
    if given:
        if not VERSION_RE.match(given) or ".." in given:
            raise UDError(
                "UD-USAGE",
                f"--version {given[:40]!r} is not a version (letters, digits, . _ -)",
                "give a commit SHA, a tag or a model version",
            )
        return given, "--version"
    entry = platform.ledger.ledger().latest(unit=unit.name, action="candidate")
    if entry is not None:
        return entry.version, "the newest candidate in the ledger"
    source = unit.git_source()
    branch = source.branch if source else ""
    return branch, f"the branch {branch!r}: no candidate was built yet, give --version to pin one"


def built_image(platform, unit_name: str, version: str) -> str:
    """The image the ledger's candidate of `version` was built as (pinned by digest), or ""."""
    from ..kinds.app.image import recorded_images

    return recorded_images(platform.ledger.ledger(), unit_name).get(version, "")


def cmd_k8s(args, out) -> int:
    from ..gates.manifest_policy import policy_findings, unpinned_images
    from ..kinds.app.image import recorded_images
    from ..service import load_platform
    from ..targets.kubernetes import KubernetesTarget, schema_errors

    platform, _ = load_platform()
    unit = platform.unit(args.unit)
    if args.env not in unit.environments:
        raise UDError(
            "UD-UNKNOWN-ENV",
            f"{unit.name} has no environment {args.env!r}",
            f"use one of: {', '.join(unit.environments)}",
        )
    configured = platform.target(unit, args.env)
    target = configured if isinstance(configured, KubernetesTarget) else KubernetesTarget()
    k8s_version = args.kubernetes_version or target.kubernetes_version
    version, source = _version(platform, unit, args.version)
    recorded = recorded_images(platform.ledger.ledger(), unit.name)
    image = recorded.get(version, "")
    manifests = target.render(unit, args.env, version, image)
    errors = schema_errors(manifests, k8s_version)
    if errors:
        raise UDError(
            "UD-K8S-SCHEMA",
            f"unit {unit.name}: the manifests for {args.env} do not fit Kubernetes {k8s_version}: "
            + "; ".join(errors[:5]),
            "fix the unit's kubernetes: block (a field the schema refuses)",
        )
    findings = policy_findings(manifests)
    if recorded:  # a unit that ships images: a tag is what the manifest-policy gate refuses
        findings += unpinned_images(manifests)
    data = {
        "unit": unit.name,
        "env": args.env,
        "version": version,
        "version_source": source,
        "image": image or None,
        "kubernetes_version": k8s_version,
        "policy": findings,
        "manifests": manifests,
    }

    def text() -> str:
        head = [
            f"# {unit.name} in {args.env} at {version}; version from {source}",
            f"# schema: valid for Kubernetes {k8s_version} (kubernetes-validate, strict)",
            *(
                [f"# policy: {f['rule']}: {f['message']}" for f in findings]
                or ["# policy: non-root, limits set, unprivileged"]
            ),
        ]
        return (
            "\n".join(head)
            + "\n"
            + yaml.dump_all(manifests, Dumper=_NoAliases, sort_keys=False).rstrip()
        )

    out.result(data, text)
    return 0


def register(add) -> None:
    sp = add(
        "render",
        lambda args, out: args.render_fn(args, out),
        "print what a deploy target would apply",
    )
    what = sp.add_subparsers(dest="what", required=True, parser_class=type(sp))
    k = what.add_parser("k8s", help="the Kubernetes manifests of an app unit for an environment")
    k.add_argument("unit")
    k.add_argument("--env", required=True)
    k.add_argument(
        "--version", default="", help="the version to render (default: the newest candidate)"
    )
    k.add_argument(
        "--kubernetes-version", default="", help="validate against this Kubernetes version's schema"
    )
    k.set_defaults(render_fn=cmd_k8s)
