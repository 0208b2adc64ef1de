"""docs/tutorials/app-developer.md, run as written (tests/tutorials.py), and what it claims.

Its last part ships the app as an image: it needs the container tools (`.ci/run` installs
them), and shares the Debian base's root file system with tests/test_containers.py."""

import subprocess
import tempfile
from pathlib import Path

import pytest

from tutorials import deployed, ledger_entries, platform_remote, run_tutorial, stop_services
from unified_delivery.containers import Containers, missing_tools
from unified_delivery.home import Home

pytestmark = pytest.mark.e2e
MISSING = missing_tools(("buildah", "skopeo", "podman", "docker-registry", "mmdebstrap"))
CACHE = Path(tempfile.gettempdir()) / "ud-test-containers-cache"


@pytest.mark.skipif(bool(MISSING), reason=f"the container tools are missing: {', '.join(MISSING)}")
def test_app_developer(tmp_path: Path):
    root = tmp_path / "acme"
    try:
        run_tutorial("app-developer.md", tmp_path, PLATFORM_REMOTE=str(platform_remote(tmp_path / "platform")),
                     UD_CONTAINERS_CACHE=str(CACHE))
    finally:
        stop_services(root)
        Containers.of(Home(root / ".ud")).remove()  # hundreds of MB of image storage
    rev = lambda ref: subprocess.run(["git", "rev-parse", ref], cwd=root, capture_output=True,  # noqa: E731
                                     text=True).stdout.strip()
    head, refused = rev("HEAD"), rev("HEAD~2")
    assert deployed(root)["shop"] == {"staging": head, "production": head}
    gate_results = ledger_entries(root, unit="shop", action="gate")
    assert any(e.version == refused and not e.payload["passed"] and e.payload["gate"] == "tests" for e in gate_results)
    # The image commit: built as an image, its artifact the digest, its suite run inside it.
    (candidate,) = [e for e in ledger_entries(root, unit="shop", action="candidate") if e.version == head]
    artifact = candidate.payload["artifact"]
    assert artifact["digest"].startswith("sha256:")
    assert artifact["details"]["image"].endswith(f"/shop@{artifact['digest']}")
    (tests,) = [e for e in gate_results if e.version == head and e.payload["gate"] == "tests"]
    assert tests.payload["passed"] and tests.payload["metadata"]["isolation"] == "container"
