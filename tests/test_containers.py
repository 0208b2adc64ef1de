"""Apps as images (issue 21, items 1 and 2): an app whose repository has a Containerfile is
built with buildah at the candidate commit, labelled, pushed to the home's own registry (a real
`docker-registry` on a loopback port), and its digest is the candidate's artifact in the ledger;
the same commit is never built twice. Then the container target (a release run as its image), the
container-policy gate, the tests gate run inside the image, and the manifest-policy gate's refusal
of a tag for a unit that ships images.

Real tools throughout (buildah, skopeo, docker-registry, mmdebstrap); skipped, with the reason,
where they are missing. The base image's root file system (mmdebstrap, about 30 s) is kept in a
folder shared by every session on this machine; each module's home imports it into its own
registry once."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from tests import tiny_platform as tiny
from unified_delivery import Platform
from unified_delivery.containers import Containers, missing_tools
from unified_delivery.errors import UDError
from unified_delivery.governance import Governance
from unified_delivery.home import Home
from unified_delivery.kinds.app import image
from unified_delivery.kinds.app.translator import AppTranslator
from unified_delivery.kinds.base import BuildContext
from unified_delivery.service import promote, rollback
from unified_delivery.targets import registry as registries
from unified_delivery.targets.registry import ImageRegistry
from unified_delivery.targets.roles import ReleaseStore

NEEDED = ("buildah", "skopeo", "docker-registry", "mmdebstrap")
MISSING = missing_tools(NEEDED)
needs_tools = pytest.mark.skipif(
    bool(MISSING), reason=f"the container tools are missing: {', '.join(MISSING)}"
)
# Shared by sessions: the Debian root file system takes ~30 s to make and never changes.
CACHE = Path(tempfile.gettempdir()) / "ud-test-containers-cache"

APP = '''
import json, os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"status": "ok", "version": os.environ.get("UD_VERSION"),
                           "uid": os.getuid()}).encode()
        self.send_response(200); self.send_header("Content-Type", "application/json")
        self.end_headers(); self.wfile.write(body)
    def log_message(self, *a):
        pass

state = os.environ.get("UD_STATE_DIR")
if state:  # the persistent folder: one line per start, kept across releases
    with open(os.path.join(state, "starts.log"), "a") as f:
        f.write(os.environ.get("UD_VERSION", "?") + "\\n")
args = sys.argv
port = int(args[args.index("--port") + 1]) if "--port" in args else int(os.environ["PORT"])
HTTPServer(("0.0.0.0", port), H).serve_forever()
'''

CONTAINERFILE = '''
ARG UD_BASE_IMAGE
FROM ${UD_BASE_IMAGE}
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin app
COPY app.py /app/app.py
USER 10001
CMD ["python3", "/app/app.py"]
'''

UNIT = '''
type: unified_delivery.app
attributes:
  name: web
  team: web
  repository: "{repo}"
  service: {{startup_timeout_s: 15}}
  test_command: ["{{python}}", "-m", "unittest", "-v"]
  kubernetes:
    image: "registry.example.com/web:{{version}}"
    port: 8000
    resources: {{limits: {{cpu: 500m, memory: 256Mi}}}}
'''


class ImageProject:
    """One app unit with a Containerfile in a bare Git remote, on a home of its own."""

    def __init__(self, tmp: Path, monkeypatch: pytest.MonkeyPatch):
        self.remote, self.work = tmp / "web.git", tmp / "web"
        self.project, self.home = tmp / "platform", tmp / "home"
        tiny.git("init", "-q", "--bare", "--initial-branch=main", str(self.remote), cwd=tmp)
        tiny.git("clone", "-q", str(self.remote), str(self.work), cwd=tmp)
        (self.project / "units").mkdir(parents=True)
        (self.project / "units" / "web.yaml").write_text(UNIT.format(repo=self.remote))
        (self.project / "policy.yaml").write_text(tiny.POLICY.replace("FREEZES", "[]"))
        monkeypatch.setenv("UD_HOME", str(self.home))
        monkeypatch.setenv("DAGSTER_HOME", str(self.home / "dagster"))
        monkeypatch.setenv("UD_PROJECT", str(self.project))
        monkeypatch.setenv("UD_CONTAINERS_CACHE", str(CACHE))
        self.platform = Platform.from_directory(
            self.project / "units",
            governance=Governance.from_file(self.project / "policy.yaml"),
        )
        self.defs = self.platform.definitions()
        self.logs: list[str] = []

    def commit(self, message: str, files: dict[str, str]) -> str:
        for path, text in files.items():
            (self.work / path).write_text(text)
        tiny.git("add", "-A", cwd=self.work)
        tiny.git("commit", "-q", "-m", message, cwd=self.work)
        tiny.git("push", "-q", "origin", "main", cwd=self.work)
        return tiny.git("rev-parse", "HEAD", cwd=self.work)

    def build(self, ref: str = ""):
        """The candidate step's build, in this process (what the stage asset calls)."""
        unit = self.platform.unit("web")
        self.logs = []
        ctx = BuildContext(
            home=Home.current(),
            target=self.platform.target(unit, unit.environments[0]),
            targets=self.platform.targets,
            units=self.platform.units,
            config={"ref": ref},
            log=self.logs.append,
            registry=self.platform.registry,
        )
        return AppTranslator().build_candidate(unit, ctx)

    def candidates(self) -> list[dict]:
        entries = self.platform.ledger.ledger().entries(unit="web", action="candidate")
        return [e.payload for e in entries]

    def skopeo(self, *args: str) -> dict:
        done = subprocess.run(
            ["skopeo", "inspect", "--tls-verify=false", *args],
            env=Containers.of(Home.current()).env(),
            capture_output=True, text=True, timeout=60, check=True,
        )
        return json.loads(done.stdout)

    def local_images(self) -> list[str]:
        done = subprocess.run(["buildah", "images", "--all", "--quiet"],
                              env=Containers.of(Home.current()).env(),
                              capture_output=True, text=True, timeout=60, check=True)
        return done.stdout.split()

    def deployment(self, env: str):
        unit = self.platform.unit("web")
        return self.platform.target(unit, env).status(unit, env)

    def stop(self) -> None:
        for store in self.platform.targets.playing(ReleaseStore):
            store.stop_all()
        registries.stop_local(Home(self.home))
        # The home's image storage is hundreds of MB: not left for pytest's kept temp folders.
        Containers.of(Home(self.home)).remove()
        shutil.rmtree(self.home / "registry", ignore_errors=True)


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        project = ImageProject(tmp_path_factory.mktemp("containers"), mp)
        project.first = project.commit("a web app with a Containerfile",
                                       {"app.py": APP, "Containerfile": CONTAINERFILE})
        try:
            yield project
        finally:
            project.stop()


@needs_tools
def test_a_commit_becomes_an_image_in_the_registry_and_its_digest_the_candidates_artifact(app):
    out = promote(app.platform, app.defs, "web", "staging", principal="human:local-operator")
    assert out.success, out.error
    (candidate,) = app.candidates()
    artifact = candidate["artifact"]
    assert artifact["version"] == app.first
    digest = artifact["digest"]
    assert digest.startswith("sha256:") and len(digest) == 71
    address = registries.local_address(Home.current())
    assert address and address.startswith("127.0.0.1:")
    details = artifact["details"]
    assert details["image"] == f"{address}/web@{digest}"
    assert details["image_tag"] == app.first
    assert details["source_digest"].startswith("git-tree:")

    # The registry holds it under the commit's tag, with that digest, labelled with its source.
    pushed = app.skopeo(f"docker://{address}/web:{app.first}")
    assert pushed["Digest"] == digest
    labels = pushed["Labels"]
    assert labels[image.SOURCE_LABEL] == str(app.remote)
    assert labels[image.REVISION_LABEL] == app.first
    assert labels[image.UNIT_LABEL] == "web"
    manifest = app.skopeo("--raw", f"docker://{address}/web@{digest}")
    assert manifest["annotations"][image.REVISION_LABEL] == app.first
    assert manifest["annotations"][image.UNIT_LABEL] == "web"
    # Built FROM the platform's base, made once and kept in the same registry.
    base = app.skopeo(f"docker://{address}/{image.BASE_NAME}:{image.BASE_TAG}")
    assert set(base["Layers"]) <= set(pushed["Layers"])


@needs_tools
def test_the_kubernetes_manifests_of_a_built_commit_run_its_image_by_digest(app):
    from unified_delivery.commands.render import built_image
    from unified_delivery.targets.kubernetes import (DEFAULT_KUBERNETES_VERSION, KubernetesTarget,
                                                     schema_errors)

    image_ref = built_image(app.platform, "web", app.first)
    assert image_ref == app.candidates()[0]["artifact"]["details"]["image"]
    manifests = KubernetesTarget().render(app.platform.unit("web"), "production", app.first,
                                          image_ref)
    (deployment,) = [m for m in manifests if m["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == image_ref and "@sha256:" in container["image"]
    assert schema_errors(manifests, DEFAULT_KUBERNETES_VERSION) == []  # kubernetes-validate
    # A version never built as an image keeps the unit's template.
    assert built_image(app.platform, "web", "0" * 40) == ""
    plain = KubernetesTarget().render(app.platform.unit("web"), "production", "v1")
    (deployment,) = [m for m in plain if m["kind"] == "Deployment"]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "registry.example.com/web:v1")


@needs_tools
def test_the_same_commit_is_not_built_again(app):
    first = app.skopeo(
        f"docker://{registries.local_address(Home.current())}/web:{app.first}")["Digest"]
    images = app.local_images()
    again = app.build(app.first)
    assert again.digest == first
    assert any("not built again" in line for line in app.logs), app.logs
    assert not any(line.startswith("building image") for line in app.logs)
    assert app.local_images() == images  # buildah was not run: nothing new in the storage


@needs_tools
def test_a_new_commit_is_a_new_image_on_the_cached_layers(app):
    before = app.skopeo(f"docker://{registries.local_address(Home.current())}/web:{app.first}")
    second = app.commit("a second version", {"app.py": APP + "\n# v2\n"})
    built = app.build(second)
    assert built.version == second and built.digest != before["Digest"]
    after = app.skopeo(f"docker://{registries.local_address(Home.current())}/web:{second}")
    # Only the layer of the changed file is new: the base and the user's layer are reused.
    assert after["Layers"][:-1] == before["Layers"][:-1]
    assert after["Layers"][-1] != before["Layers"][-1]


@needs_tools
def test_the_registry_stops_and_comes_back_on_its_port_with_its_images(app):
    home = Home.current()
    address = registries.local_address(home)
    assert registries.stop_local(home)
    assert registries.local_address(home) is None
    assert registries.ensure_local(home) == address  # the names the ledger recorded still work
    assert app.skopeo(f"docker://{address}/web:{app.first}")["Digest"] == app.candidates()[0][
        "artifact"]["digest"]


@needs_tools
def test_a_containerfile_that_does_not_build_refuses_the_commit(app):
    bad = app.commit("a broken Containerfile",
                     {"Containerfile": CONTAINERFILE.replace("COPY app.py", "COPY missing.py")})
    with pytest.raises(UDError) as refused:
        app.build(bad)
    assert refused.value.code == "UD-APP-IMAGE-BUILD"
    assert "missing.py" in refused.value.message
    assert bad[:12] in refused.value.message
    assert registries.local_address(Home.current())
    tiny.git("revert", "--no-edit", "HEAD", cwd=app.work)
    tiny.git("push", "-q", "origin", "main", cwd=app.work)


def test_without_the_tools_the_home_keeps_the_process_target_and_a_named_registry_refuses(
    monkeypatch, tmp_path
):
    monkeypatch.setenv("PATH", str(tmp_path))  # no buildah, no skopeo
    reason = image.unavailable(ImageRegistry())
    assert reason and "buildah" in reason and "skopeo" in reason
    with pytest.raises(UDError) as refused:
        image.unavailable(ImageRegistry(address="registry.example.com"))
    assert refused.value.code == "UD-APP-IMAGE-TOOLS"
    assert "registry.example.com" in refused.value.message


def test_a_named_registry_reads_its_credentials_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("UD_REGISTRY_USERNAME", "robot")
    monkeypatch.setenv("UD_REGISTRY_PASSWORD", "s3cret-token-value")
    reg = ImageRegistry(address="registry.example.com", namespace="acme/apps")
    access = reg.open(Home(tmp_path / "home"))
    assert access.repository("web") == "registry.example.com/acme/apps/web"
    assert access.tls == "--tls-verify=true"
    auth = json.loads(access.containers.auth_file.read_text())
    assert auth["auths"]["registry.example.com"]["auth"] == "cm9ib3Q6czNjcmV0LXRva2VuLXZhbHVl"
    assert access.containers.auth_file.stat().st_mode & 0o077 == 0
    assert "s3cret" not in reg.model_dump_json()  # the resource itself names variables only


# ---- the container target: the local release target runs an image release with podman ----


def podman_names(app) -> list[str]:
    done = subprocess.run(
        ["podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs", "ps", "--all",
         "--format", "{{.Names}}"],
        env=Containers.of(Home.current()).env(), capture_output=True, text=True, timeout=60,
        check=True)
    return sorted(done.stdout.split())


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


needs_podman = pytest.mark.skipif(
    bool(missing_tools(("podman",))) or bool(MISSING),
    reason=f"podman or the image tools are missing: {missing_tools(('podman', *NEEDED))}",
)


@needs_podman
def test_a_release_with_an_image_runs_as_its_container_with_the_state_folder_mounted(app):
    deployed = app.deployment("staging")
    assert deployed.version == app.first
    assert deployed.details["runtime"] == "container"
    assert deployed.details["image"] == app.candidates()[0]["artifact"]["details"]["image"]
    answer = get(deployed.details["url"] + "/health")
    assert answer["version"] == app.first
    assert answer["uid"] == 10001  # the image's user, not the platform's root
    (name,) = podman_names(app)
    assert name.startswith(f"ud-web-staging-{app.first[:12]}-")
    state = Path(deployed.details["state_dir"])
    assert (state / "starts.log").read_text().split() == [app.first]


@needs_podman
def test_a_new_image_is_switched_to_blue_green_and_rolled_back_to_the_old_one(app):
    old = app.deployment("staging")
    out = promote(app.platform, app.defs, "web", "staging", principal="human:local-operator")
    assert out.success, out.error
    new = app.deployment("staging")
    head = tiny.git("rev-parse", "HEAD", cwd=app.work)
    assert new.version == head != old.version
    assert new.details["runtime"] == "container" and new.details["port"] != old.details["port"]
    assert get(new.details["url"] + "/health")["version"] == head
    (name,) = podman_names(app)  # the old release's container is stopped and removed
    assert head[:12] in name

    back = rollback(app.platform, app.defs, "web", "staging", reason="test",
                    principal="human:local-operator")
    assert back.success, back.error
    again = app.deployment("staging")
    assert again.version == app.first and again.details["runtime"] == "container"
    assert get(again.details["url"] + "/health")["version"] == app.first
    (name,) = podman_names(app)
    assert app.first[:12] in name
    state = Path(again.details["state_dir"])
    assert (state / "starts.log").read_text().split() == [app.first, head, app.first]


@needs_podman
def test_a_container_that_does_not_start_is_refused_and_the_old_one_keeps_serving(app):
    serving = app.deployment("staging")
    app.commit("a CMD that exits", {"Containerfile": CONTAINERFILE.replace(
        'CMD ["python3", "/app/app.py"]', 'CMD ["python3", "-c", "raise SystemExit(3)"]')})
    out = promote(app.platform, app.defs, "web", "staging", principal="human:local-operator")
    assert not out.success and out.error.code == "UD-TARGET-START", out.error
    assert "exited with code 3" in out.error.message
    assert app.deployment("staging").version == serving.version
    assert get(serving.details["url"] + "/health")["version"] == serving.version
    (name,) = podman_names(app)  # the failed release's container is gone, the old one runs
    assert serving.version[:12] in name
    tiny.git("revert", "--no-edit", "HEAD", cwd=app.work)
    tiny.git("push", "-q", "origin", "main", cwd=app.work)


@needs_podman
def test_a_container_stopped_behind_the_platforms_back_is_seen(app):
    serving = app.deployment("staging")
    (name,) = podman_names(app)
    subprocess.run(["podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs", "rm",
                    "--force", "--time", "2", name], env=Containers.of(Home.current()).env(),
                   capture_output=True, timeout=60, check=True)
    target = app.platform.target(app.platform.unit("web"), "staging")
    deadline = time.monotonic() + 10
    while app.deployment("staging").details["running"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert app.deployment("staging").details["running"] is False
    health = target.health(app.platform.unit("web"), "staging")
    assert not health.healthy and "not running" in health.message
    assert app.deployment("staging").version == serving.version  # the record, not a guess


# ---- the container-policy gate: the image as the registry has it ----------------------------


def container_policy(app, artifact, **settings):
    from unified_delivery.gates import build_gate
    from unified_delivery.gates.base import GateContext
    from unified_delivery.units import GateSpec

    unit = app.platform.unit("web")
    gate = build_gate(GateSpec(type="container-policy", settings=settings), unit)
    ctx = GateContext(unit=unit, stage="candidate", guards="staging", version=artifact.version,
                      artifact=artifact, target=app.platform.target(unit, "staging"),
                      home=Home.current(), log=lambda _: None)
    return gate.evaluate(ctx)


@needs_tools
def test_the_container_policy_passes_a_labelled_non_root_image_without_secrets(app):
    result = container_policy(app, app.build(app.first))
    assert result.passed, result.message
    assert result.code == "UD-GATE-CONTAINER-OK"
    assert result.metadata["user"] == "10001" and result.metadata["layers_scanned"] == 2
    assert result.metadata["labels"][image.REVISION_LABEL] == app.first
    # A size budget below the image's refuses it.
    small = container_policy(app, app.build(app.first), max_size_mb=1)
    assert not small.passed and "over the budget of 1" in small.message


@needs_tools
def test_the_container_policy_refuses_an_image_that_runs_as_root(app):
    root = app.commit("no USER", {"Containerfile": CONTAINERFILE.replace("USER 10001\n", "")})
    result = container_policy(app, app.build(root))
    assert not result.passed and result.code == "UD-GATE-CONTAINER-REFUSED"
    assert "runs as root (USER unset)" in result.message


@needs_tools
def test_the_container_policy_refuses_a_secret_in_a_layer(app):
    begin, end = "-----BEGIN RSA " + "PRIVATE KEY-----", "-----END RSA " + "PRIVATE KEY-----"
    body = "MIIEowIBAAKCAQEA7bq98Zt4xKJ1Qx1nO0mPZ9cV3sYb2W8f6l0kQeXrTqLm5N1pH8aJrYdF"
    leaky = CONTAINERFILE.replace(
        "COPY app.py", f"RUN printf '%s\\n' '{begin}' '{body}' '{end}' > /deploy.pem\nCOPY app.py")
    sha = app.commit("a key baked into a layer", {"Containerfile": leaky})
    result = container_policy(app, app.build(sha))
    assert not result.passed and result.code == "UD-GATE-CONTAINER-REFUSED"
    (secret,) = result.metadata["secrets"]
    assert secret["file"] == "deploy.pem" and secret["kind"] == "Private Key"
    assert body not in json.dumps(result.metadata) and body not in result.message  # masked
    # Without an image there is nothing to check: refused, saying why.
    no_image = dataclasses.replace(app.build(app.first), details={})
    refused = container_policy(app, no_image)
    assert not refused.passed and refused.code == "UD-GATE-CONTAINER-NO-IMAGE"


# ---- the tests gate: the suite runs inside the candidate's image -----------------------------

IN_IMAGE_SUITE = """
import os, sys, unittest

class InTheImage(unittest.TestCase):
    def test_the_interpreter_and_user_are_the_images(self):
        self.assertEqual(sys.executable, "/usr/bin/python3")
        self.assertEqual(os.getuid(), 10001)

    def test_the_image_has_the_app_and_the_suite_its_commit(self):
        self.assertTrue(os.path.exists("/app/app.py"))
        self.assertTrue(os.path.exists("test_app.py"))
"""

# PyYAML is in the platform's environment (the host) and not in the image.
NEEDS_YAML = """
import unittest

class Config(unittest.TestCase):
    def test_reads_yaml(self):
        import yaml
        self.assertEqual(yaml.safe_load("a: 1"), {"a": 1})
"""


def run_tests_gate(app, artifact, **settings):
    from unified_delivery.gates import build_gate
    from unified_delivery.gates.base import GateContext
    from unified_delivery.units import GateSpec

    unit = app.platform.unit("web")
    gate = build_gate(GateSpec(type="tests", settings=settings), unit)
    ctx = GateContext(unit=unit, stage="candidate", guards="staging", version=artifact.version,
                      artifact=artifact, target=app.platform.target(unit, "staging"),
                      home=Home.current(), log=app.logs.append)
    return gate.evaluate(ctx)


@needs_podman
def test_the_tests_gate_runs_the_suite_inside_the_image(app):
    sha = app.commit("a suite", {"test_app.py": IN_IMAGE_SUITE})
    artifact = app.build(sha)
    result = run_tests_gate(app, artifact)
    assert result.passed, (result.message, result.metadata.get("output_tail"))
    assert result.code == "UD-GATE-TESTS-PASSED" and result.metadata["tests"] == 2
    assert result.metadata["isolation"] == "container"
    assert result.metadata["image"] == artifact.details["image"]
    assert "as its user 10001" in result.metadata["isolation_detail"]
    assert not [n for n in podman_names(app) if n.startswith("ud-tests-")]  # removed after
    # The same suite on the host (the artifact without its image) fails: it is not the image's.
    on_host = run_tests_gate(app, dataclasses.replace(artifact, details={}))
    assert not on_host.passed and on_host.code == "UD-GATE-TESTS-FAILED"
    assert on_host.metadata["isolation"] != "container" and on_host.metadata["failures"] >= 1


@needs_podman
def test_the_tests_gate_refuses_an_image_that_lacks_what_the_host_has(app):
    pytest.importorskip("yaml")  # on the host, so that the suite passes there
    sha = app.commit("a suite that needs PyYAML", {"test_app.py": NEEDS_YAML})
    artifact = app.build(sha)
    on_host = run_tests_gate(app, dataclasses.replace(artifact, details={}))
    assert on_host.passed, (on_host.message, on_host.metadata.get("output_tail"))
    result = run_tests_gate(app, artifact)
    assert not result.passed and result.code == "UD-GATE-TESTS-FAILED"
    assert result.metadata["tests"] == 1 and result.metadata["errors"] == 1
    assert "No module named 'yaml'" in result.metadata["output_tail"]
    assert "install it in the image" in result.remediation


@needs_podman
def test_a_suite_that_runs_too_long_in_the_image_is_stopped(app):
    slow = ("import time, unittest\n\nclass Slow(unittest.TestCase):\n"
            "    def test_sleeps(self):\n        time.sleep(120)\n")
    artifact = app.build(app.commit("a slow suite", {"test_app.py": slow}))
    started = time.monotonic()
    result = run_tests_gate(app, artifact, timeout_s=5)
    assert not result.passed and result.code == "UD-GATE-TESTS-TIMEOUT"
    assert time.monotonic() - started < 60
    assert not [n for n in podman_names(app) if n.startswith("ud-tests-")]  # stopped, removed


# ---- the manifest-policy gate: a unit that ships images runs them by digest ------------------


def manifest_policy(app, artifact, version="", unit=None):
    from unified_delivery.gates import build_gate
    from unified_delivery.gates.base import GateContext
    from unified_delivery.units import GateSpec

    unit = unit or app.platform.unit("web")
    gate = build_gate(GateSpec(type="manifest-policy"), unit)
    ctx = GateContext(unit=unit, stage="candidate" if artifact else "staging", guards="production",
                      version=artifact.version if artifact else version, artifact=artifact,
                      target=app.platform.target(unit, "staging"), home=Home.current(),
                      log=lambda _: None, ledger=app.platform.ledger.ledger())
    return gate.evaluate(ctx)


@needs_tools
def test_the_manifest_policy_refuses_a_tag_for_a_unit_that_ships_images(app):
    built = app.build(app.first)
    passed = manifest_policy(app, built)
    assert passed.passed, passed.message  # its image by digest
    # At a later stage (no artifact) the version's image is the one its candidate recorded.
    later = manifest_policy(app, None, version=app.first)
    assert later.passed, later.message
    # A commit of the same app built where the container tools were missing: the template's tag.
    skipped = dataclasses.replace(built, version="1" * 40, details={
        "image_skipped": "the container tools are missing (buildah, skopeo)"})
    refused = manifest_policy(app, skipped)
    assert not refused.passed and refused.code == "UD-GATE-MANIFEST-DIGEST"
    assert f"registry.example.com/web:{'1' * 40}" in refused.message
    assert "by tag, not by digest" in refused.message and "buildah" in refused.message
    assert "leave kubernetes.image out" in refused.remediation
    assert refused.metadata["findings"][0]["rule"] == "digest"
    never = manifest_policy(app, None, version="0" * 40)  # a version the ledger has no image of
    assert not never.passed and never.code == "UD-GATE-MANIFEST-DIGEST"
    # A unit that ships no image keeps its template: the same block, another unit's name.
    plain = app.platform.unit("web").model_copy(update={"name": "plain"})
    kept = manifest_policy(app, dataclasses.replace(built, unit="plain", details={}), unit=plain)
    assert kept.passed and kept.code == "UD-GATE-POLICY-OK", kept.message


@needs_tools
def test_an_app_with_a_built_image_needs_no_kubernetes_image(app):
    from unified_delivery.targets.kubernetes import KubernetesTarget

    unit = app.platform.unit("web")
    imageless = unit.model_copy(update={"kubernetes": unit.kubernetes.model_copy(
        update={"image": ""})})
    built = app.build(app.first)
    result = manifest_policy(app, built, unit=imageless)
    assert result.passed, result.message
    (deployment,) = [m for m in KubernetesTarget().render(imageless, "production", app.first,
                                                          built.details["image"])
                     if m["kind"] == "Deployment"]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == (
        built.details["image"])
    # A version never built as an image has nothing to run: refused, saying what to do.
    refused = manifest_policy(app, None, version="0" * 40, unit=imageless)
    assert not refused.passed and refused.code == "UD-CONFIG-K8S"
    assert "no image to run" in refused.message and "ud promote web" in refused.remediation
