"""Container policy: what an app's image (kinds/app/image.py) must be before it runs anywhere.

    - type: container-policy
      settings: {max_size_mb: 500}

Read from the registry, by the digest the candidate recorded (what staging, production and the
cluster would run), never from the local build storage:
- a user that is not root (`USER` set, not 0 or root);
- no secret in the image's own layers: the security gate's secrets scan (detect-secrets) over
  the files of every layer above the base (the default base's layers, or `base_image`'s, are
  the platform's, not the app's); each finding says its layer and path, masked;
- its size within `max_size_mb` (the layers as the registry stores them);
- the labels that say where it came from (source, revision, unit).
"""

from __future__ import annotations

import json
import shutil
import tarfile
import tempfile
from pathlib import Path

from pydantic import Field

from ..containers import Containers
from ..errors import UDError
from .base import Gate, GateContext, GateResult, GateSettings

MAX_LAYER_FILES = 20_000  # a layer with more is a root file system, not an app's files
LABELS = (
    "org.opencontainers.image.source",
    "org.opencontainers.image.revision",
    "dev.unified-delivery.unit",
)


class ContainerPolicySettings(GateSettings):
    max_size_mb: float = Field(default=500.0, gt=0, description="the image's size budget")
    secrets: bool = Field(default=True, description="scan the app's layers for secrets")
    labels: list[str] = Field(
        default_factory=lambda: list(LABELS), description="labels the image must carry"
    )
    base_image: str = Field(
        default="",
        description="the base whose layers are not scanned; default: the platform's default "
        "base in the same registry",
    )


class ContainerPolicyGate(Gate[ContainerPolicySettings]):
    type = "container-policy"
    family = "security"
    kinds = ("app",)
    Settings = ContainerPolicySettings

    def evaluate(self, ctx: GateContext) -> GateResult:
        details = ctx.artifact.details if ctx.artifact else {}
        image = details.get("image") or ""
        if not image:
            why = details.get("image_skipped") or "no Containerfile"
            return GateResult(
                False,
                "UD-GATE-CONTAINER-NO-IMAGE",
                f"{ctx.unit.name} at {ctx.version[:12]} was not built as an image ({why})",
                "add a Containerfile to the app, and buildah and skopeo where it builds; or "
                "remove the container-policy gate",
            )
        from ..kinds.app.image import BASE_NAME, BASE_TAG
        from ..targets import registry

        containers = Containers.of(ctx.home)
        local = image.split("/", 1)[0] == registry.recorded_address(ctx.home)
        if local:
            registry.ensure_local(ctx.home)
        tls = f"--tls-verify={'false' if local else 'true'}"

        def skopeo(*args: str) -> str:
            return containers.run(
                "skopeo",
                *args,
                code="UD-GATE-CONTAINER-ERROR",
                what=f"reading {image}",
                remediation="check that the image's registry is reachable",
                timeout=600,
            ).stdout

        config = json.loads(skopeo("inspect", tls, "--config", f"docker://{image}"))
        manifest = json.loads(skopeo("inspect", tls, "--raw", f"docker://{image}"))
        user = (config.get("config") or {}).get("User") or ""
        labels = (config.get("config") or {}).get("Labels") or {}
        layers = [layer["digest"] for layer in manifest.get("layers", [])]
        size_mb = sum(layer.get("size", 0) for layer in manifest.get("layers", [])) / 1e6
        problems: list[str] = []
        if user.split(":")[0] in ("", "0", "root"):
            problems.append(f"it runs as root (USER {user or 'unset'})")
        missing = [k for k in self.settings.labels if not labels.get(k)]
        if missing:
            problems.append(f"labels missing: {', '.join(missing)}")
        if size_mb > self.settings.max_size_mb:
            problems.append(f"{size_mb:.0f} MB is over the budget of {self.settings.max_size_mb:g}")
        secrets: list[dict] = []
        own = layers
        base = self.settings.base_image or f"{image.split('/', 1)[0]}/{BASE_NAME}:{BASE_TAG}"
        if self.settings.secrets:
            base_layers = set()
            if base:
                raw = containers.run(
                    "skopeo",
                    "inspect",
                    tls,
                    "--raw",
                    f"docker://{base}",
                    code="UD-GATE-CONTAINER-ERROR",
                    what="",
                    remediation="",
                    check=False,
                    timeout=120,
                )
                if raw.returncode == 0:
                    base_layers = {x["digest"] for x in json.loads(raw.stdout).get("layers", [])}
            own = [d for d in layers if d not in base_layers]
            secrets = self._scan(containers, tls, image, own, ctx)
            if secrets:
                where = ", ".join(f"{s['file']}:{s['line']} ({s['kind']})" for s in secrets[:5])
                problems.append(f"{len(secrets)} secret(s) in its layers: {where}")
        meta = {
            "image": image,
            "user": user,
            "size_mb": round(size_mb, 1),
            "max_size_mb": self.settings.max_size_mb,
            "labels": {k: labels.get(k) for k in self.settings.labels},
            "layers": len(layers),
            "layers_scanned": len(own) if self.settings.secrets else 0,
            "secrets": secrets[:50],
        }
        if problems:
            return GateResult(
                False,
                "UD-GATE-CONTAINER-REFUSED",
                f"image {image}: " + "; ".join(problems),
                "set a non-root USER in the Containerfile, keep secrets out of the image (read "
                "them from the environment at run time), keep it within the size budget; then "
                "push a new commit",
                meta,
            )
        return GateResult(
            True,
            "UD-GATE-CONTAINER-OK",
            f"image {image}: user {user}, {size_mb:.0f} MB, labelled, no secret in its own "
            f"{meta['layers_scanned']} layer(s)",
            "",
            meta,
        )

    def _scan(
        self, containers: Containers, tls: str, image: str, layers: list[str], ctx: GateContext
    ) -> list[dict]:
        """The security gate's secrets scan over the files of `layers` (their digests)."""
        from .security import secret_scan

        with tempfile.TemporaryDirectory(dir=containers.ensure().root) as tmp:
            blobs = Path(tmp) / "image"
            containers.run(
                "skopeo",
                "copy",
                "--quiet",
                tls.replace("--tls-verify", "--src-tls-verify"),
                f"docker://{image}",
                f"dir:{blobs}",
                code="UD-GATE-CONTAINER-ERROR",
                what=f"copying {image} to scan it",
                remediation="check that the image's registry is reachable",
                timeout=600,
            )
            found: list[dict] = []
            for digest in layers:
                tree = Path(tmp) / "layers" / digest.split(":")[-1][:12]
                tree.mkdir(parents=True)
                try:
                    with tarfile.open(blobs / digest.split(":")[-1]) as tar:  # any compression
                        members = [m for m in tar.getmembers() if m.isfile()]
                        if len(members) > MAX_LAYER_FILES:
                            ctx.log(f"layer {digest[:19]}: {len(members)} files, not scanned")
                            continue
                        tar.extractall(tree, members=members, filter="data")
                except (tarfile.TarError, OSError) as exc:
                    raise UDError(
                        "UD-GATE-CONTAINER-ERROR",
                        f"layer {digest[:19]} of {image} could not be read: {exc}",
                        "build the image again",
                    ) from None
                secrets, _ = secret_scan(tree)
                found += [{**s, "layer": digest[:19]} for s in secrets]
                shutil.rmtree(tree, ignore_errors=True)
            return found
