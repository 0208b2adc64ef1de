"""An app's image, one per commit: an app whose folder has a Containerfile (or Dockerfile) is
built with buildah at the candidate commit, labelled with where it came from, and pushed to the
platform's registry (targets/registry.py), tagged with the commit. The candidate's artifact is
then the image's digest.

- Once per commit: the tag is looked up in the registry first; a commit whose image is there is
  not built again (two builds of one commit at once take turns on a lock).
- Deterministic: the image's timestamps are the commit's, and layers are cached in the home's
  storage (`--layers`), so an unchanged step is not run again.
- Labelled, as labels (podman inspect) and manifest annotations (the registry): the OCI
  `org.opencontainers.image.source` and `.revision`, and the unit (`UNIT_LABEL`).
- The base: the build argument UD_BASE_IMAGE names the image to build FROM: the platform's own
  (`ImageRegistry.base_image`), or by default Debian bookworm with python3, made from the OS
  packages with mmdebstrap once and kept in the registry (its root file system in the
  containers cache, so another home imports it instead of making it again).

Without the container tools the embedded home keeps the process target (the app is built and
deployed as a release directory) and says so; a platform that names a registry is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from filelock import FileLock

from ...containers import Containers, missing_tools
from ...errors import EXIT_TARGET, UDError
from ...home import Home
from ...targets.registry import ImageRegistry, RegistryAccess

if TYPE_CHECKING:
    from ...ledger.chain import Ledger

CONTAINERFILES = ("Containerfile", "Dockerfile")
UNIT_LABEL = "dev.unified-delivery.unit"
SOURCE_LABEL = "org.opencontainers.image.source"
REVISION_LABEL = "org.opencontainers.image.revision"
BASE_ARG = "UD_BASE_IMAGE"
BASE_NAME = "ud-base/debian-python"
BASE_TAG = "bookworm"
BASE_PACKAGES = ("python3", "ca-certificates")
DEBIAN_MIRROR = "http://deb.debian.org/debian"
BUILD_TIMEOUT_S = 1800.0
# What a base image needs no copy of: it stays smaller, and each layer copy (vfs) faster.
BASE_EXCLUDES = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/info/*", "/usr/share/locale/*")

Log = Callable[[str], None]


@dataclass(frozen=True)
class Image:
    """An app commit's image in the registry."""

    repository: str  # registry/namespace/unit
    tag: str  # the commit
    digest: str  # sha256:... of its manifest
    built: bool  # False: the registry had it already

    @property
    def reference(self) -> str:
        """What runs it, pinned: repository@sha256:..."""
        return f"{self.repository}@{self.digest}"

    def details(self) -> dict[str, Any]:
        return {
            "image": self.reference,
            "image_repository": self.repository,
            "image_tag": self.tag,
            "image_digest": self.digest,
        }


def containerfile(src: Path) -> Path | None:
    """The app's Containerfile or Dockerfile, when its folder has one."""
    return next((src / n for n in CONTAINERFILES if (src / n).is_file()), None)


def recorded_images(ledger: Ledger, unit: str) -> dict[str, str]:
    """The images the ledger's candidates of `unit` were built as: version -> repository@sha256:
    (a version built again keeps its newest); empty for a unit never built as an image."""
    images: dict[str, str] = {}
    for entry in ledger.entries(unit=unit, action="candidate"):
        ref = entry.payload.get("artifact", {}).get("details", {}).get("image")
        if ref and entry.version:
            images[entry.version] = ref
    return images


def pinned(reference: str) -> bool:
    """Whether an image reference names its content (a digest), not a tag that can move."""
    return "@sha256:" in reference


def unavailable(registry: ImageRegistry) -> str | None:
    """Why images cannot be built here, or None. Refused for a platform that names a registry:
    it expects images, and a process release would not be what it audits."""
    missing = missing_tools(("buildah", "skopeo"))
    if not missing:
        return None
    reason = f"the container tools are missing ({', '.join(missing)})"
    if not registry.is_local:
        raise UDError(
            "UD-APP-IMAGE-TOOLS",
            f"{reason}: this platform pushes app images to {registry.address}",
            "install buildah and skopeo (Debian: apt-get install buildah skopeo) where builds run",
            exit_code=EXIT_TARGET,
        )
    return reason


def build(
    unit: str,
    src: Path,
    commit: str,
    *,
    source: str,
    committed_at: int,
    registry: ImageRegistry,
    home: Home,
    log: Log,
) -> Image:
    """The image of `unit` at `commit`, built from `src` and pushed unless the registry has it."""
    file = containerfile(src)
    assert file is not None
    access = registry.open(home)
    repository = access.repository(unit)
    tag = f"{repository}:{commit}"
    if digest := access.digest_of(tag):
        log(f"image {tag} is in the registry already ({digest[:19]}): not built again")
        return Image(repository, commit, digest, built=False)
    home.locks.mkdir(parents=True, exist_ok=True)
    with FileLock(str(home.locks / f"image-{unit}-{commit}.lock")):
        if digest := access.digest_of(tag):  # built by another run while this one waited
            return Image(repository, commit, digest, built=False)
        base = registry.base_image or ensure_base(access, log)
        labels = {SOURCE_LABEL: source, REVISION_LABEL: commit, UNIT_LABEL: unit}
        flags = [f for k, v in labels.items() for f in ("--label", f"{k}={v}")]
        flags += [f for k, v in labels.items() for f in ("--annotation", f"{k}={v}")]
        log(f"building image {tag} from {file.name} (base {base})")
        access.containers.run(
            "buildah",
            "build",
            "--layers",
            "--force-rm",  # a failed step's container too: nothing is left mounted
            access.tls,
            "--pull=missing",
            "--timestamp",
            str(committed_at),
            "--build-arg",
            f"{BASE_ARG}={base}",
            "-f",
            str(file),
            *flags,
            "-t",
            tag,
            str(src),
            code="UD-APP-IMAGE-BUILD",
            what=f"unit {unit}: building the image of {commit[:12]} from {file.name}",
            remediation=f"fix {file.name} and push a new commit (the build's last lines are above)",
            timeout=BUILD_TIMEOUT_S,
        )
        digest = push(access, tag, what=f"unit {unit}: pushing {tag}")
        log(f"pushed {tag} ({digest[:19]})")
        return Image(repository, commit, digest, built=True)


def push(access: RegistryAccess, tag: str, *, what: str) -> str:
    """Push a local image to its registry; the digest of what the registry stored."""
    with tempfile.TemporaryDirectory(dir=access.containers.root) as tmp:
        digest_file = Path(tmp) / "digest"
        # On the loopback registry compressing layers costs CPU and saves nothing.
        compression = ["--disable-compression"] if access.local else []
        access.containers.run(
            "buildah",
            "push",
            "--quiet",
            *compression,
            access.tls,
            "--digestfile",
            str(digest_file),
            tag,
            f"docker://{tag}",
            code="UD-APP-IMAGE-PUSH",
            what=what,
            remediation="check that the registry is reachable and the credentials "
            "(UD_REGISTRY_USERNAME, UD_REGISTRY_PASSWORD) are allowed to push",
            timeout=BUILD_TIMEOUT_S,
        )
        return digest_file.read_text().strip()


def ensure_base(access: RegistryAccess, log: Log) -> str:
    """The default base image in the registry (made and pushed the first time): its tag."""
    tag = f"{access.repository(BASE_NAME)}:{BASE_TAG}"
    if access.digest_of(tag):
        return tag
    with FileLock(str(access.containers.root / "base-image.lock")):
        if access.digest_of(tag):
            return tag
        rootfs = base_rootfs(access.containers, log)
        log(f"pushing the base image {tag} from {rootfs.name}")
        # One layer, the root file system as mmdebstrap wrote it, copied by skopeo from an OCI
        # layout: no working container, no commit, no second copy of the layer (measured 7 s
        # against 25 s for buildah add, commit and push, on a loaded 2-core machine).
        with tempfile.TemporaryDirectory(dir=access.containers.root) as tmp:
            layout = oci_layout(rootfs, Path(tmp) / "oci")
            access.containers.run(
                "skopeo",
                "copy",
                "--quiet",
                f"--dest-tls-verify={'true' if access.tls_verify else 'false'}",
                f"oci:{layout}:{BASE_TAG}",
                f"docker://{tag}",
                code="UD-APP-IMAGE-BASE",
                what=f"pushing the base image {tag}",
                remediation="check that the registry is reachable; or name a base image of the "
                "platform's own (ImageRegistry(base_image=...))",
                timeout=BUILD_TIMEOUT_S,
            )
        return tag


def oci_layout(rootfs: Path, out: Path) -> Path:
    """An OCI image layout at `out` whose one image (tagged BASE_TAG) is `rootfs` as its layer."""
    blobs = out / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def blob(data: bytes) -> dict[str, Any]:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"digest": f"sha256:{digest}", "size": len(data)}

    h = hashlib.sha256()
    with rootfs.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    layer = h.hexdigest()
    try:
        os.link(rootfs, blobs / layer)  # the same disk: no copy of 150 MB
    except OSError:
        shutil.copyfile(rootfs, blobs / layer)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "LANG=C.UTF-8",
            ],
            "Cmd": ["python3"],
        },
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer}"]},
        "history": [{"created_by": f"mmdebstrap {BASE_TAG} {' '.join(BASE_PACKAGES)}"}],
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            **blob(json.dumps(config).encode()),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": f"sha256:{layer}",
                "size": rootfs.stat().st_size,
            }
        ],
    }
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                **blob(json.dumps(manifest).encode()),
                "annotations": {"org.opencontainers.image.ref.name": BASE_TAG},
            }
        ],
    }
    (out / "index.json").write_text(json.dumps(index))
    (out / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    return out


def base_rootfs(containers: Containers, log: Log) -> Path:
    """Debian bookworm with python3 as a root file system tarball, made by mmdebstrap from the OS
    package archive (UD_DEBIAN_MIRROR) once per containers cache."""
    mirror = os.environ.get("UD_DEBIAN_MIRROR") or DEBIAN_MIRROR
    key = hashlib.sha256(f"{BASE_TAG} {BASE_PACKAGES} {BASE_EXCLUDES} {mirror}".encode())
    out = containers.cache / f"debian-{BASE_TAG}-python3-{key.hexdigest()[:12]}.tar"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out.with_suffix(".lock"))):
        if out.exists():
            return out
        if missing_tools(("mmdebstrap",)):
            raise UDError(
                "UD-APP-IMAGE-BASE",
                "making the default base image needs mmdebstrap, which is not installed",
                "install mmdebstrap (apt-get install mmdebstrap), or name a base image of the "
                "platform's own (ImageRegistry(base_image=...))",
                exit_code=EXIT_TARGET,
            )
        log(f"making the base image's root file system (Debian {BASE_TAG}, mmdebstrap)")
        tmp = out.with_name(out.name + ".tmp")
        done = subprocess.run(
            [
                "mmdebstrap",
                "--quiet",
                "--variant=minbase",
                f"--include={','.join(BASE_PACKAGES)}",
                *[f"--dpkgopt=path-exclude={p}" for p in BASE_EXCLUDES],
                "--format=tar",
                BASE_TAG,
                str(tmp),
                mirror,
            ],
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_S,
            check=False,
        )
        if done.returncode != 0:
            tmp.unlink(missing_ok=True)
            raise UDError(
                "UD-APP-IMAGE-BASE",
                f"mmdebstrap could not make Debian {BASE_TAG} from {mirror}: "
                f"{' '.join((done.stdout + done.stderr).split())[-400:]}",
                "check that the package archive is reachable (UD_DEBIAN_MIRROR), or name a base "
                "image of the platform's own (ImageRegistry(base_image=...))",
                exit_code=EXIT_TARGET,
            )
        tmp.rename(out)
        return out
