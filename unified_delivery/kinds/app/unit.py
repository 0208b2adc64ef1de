"""The app unit: service code in a Git repository (a path inside it), built at a commit, and
how its targets start it (locally, or on Kubernetes)."""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from ...soak import seconds as _seconds
from ...units import MAX_REPLICAS, GitSource, Port, Resources, Strict, Unit

ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
TEST_ENV_MAX = 32
SETUP_MAX = 16
DEPENDENCY_FILES_MAX = 16


class ServiceSpec(Strict):
    """How a local target starts an app release. Placeholders: {python} {port} {env} {home}
    {version} {mlflow_tracking_uri} {state_dir}."""

    command: list[str] = Field(default_factory=lambda: ["{python}", "app.py", "--port", "{port}"])
    env: dict[str, str] = Field(default_factory=dict)
    setup: list[str | list[str]] = Field(
        default_factory=list,
        max_length=SETUP_MAX,
        description="Commands run once per release, in order, in the release folder before its "
        "service starts (migrations, `flask init-db`); a string runs through /bin/sh -c, a list "
        "is the argv. Same placeholders and environment as `command`. A failure refuses the "
        "release with the command's output (UD-TARGET-SETUP); a rollback to a release whose "
        "setup already ran in that environment does not run it again.",
    )
    setup_timeout_s: float = Field(
        default=300.0, gt=0, le=3600, description="seconds each setup command may run"
    )
    health_path: str = "/health"
    startup_timeout_s: float = Field(
        default=90.0,
        gt=0,
        le=3600,
        description="seconds a release has to answer its health check (importing "
        "MLflow and loading a model on a loaded 2-core machine)",
    )
    ports: dict[str, Port] = Field(
        default_factory=dict, description="preferred port per environment; a free port otherwise"
    )


class RolloutStep(Strict):
    """One step of a canary: `weight` % of the environment's requests go to the new release
    for `pause`, while the analysis watches."""

    weight: int = Field(ge=1, le=99, description="% of requests for the new release")
    pause: float | str = Field(default="30s", description="how long the step lasts: 30s, 2m, 1h")

    @field_validator("pause")
    @classmethod
    def _pause(cls, v: float | str) -> float | str:
        seconds = _seconds(v)
        if not 0 < seconds <= 86400:
            raise ValueError("a step's pause is between 0 and 24h")
        return v

    @property
    def pause_s(self) -> float:
        return _seconds(self.pause)


class RolloutAnalysis(Strict):
    """The bounds the new release must keep during each step, from the front door's access log."""

    error_rate: float | None = Field(
        default=0.01, ge=0, le=1, description="highest share of answers of 500 and above"
    )
    latency_p95_ms: float | None = Field(
        default=None, gt=0, description="highest 95th percentile of the release's response time"
    )
    min_requests: int = Field(
        default=10, ge=0, description="requests the new release needs in a step to be judged"
    )
    on_inconclusive: Literal["abort", "promote"] = Field(
        default="abort", description="a step with fewer requests than min_requests"
    )
    interval_s: float = Field(default=1.0, gt=0, le=60, description="how often a step is judged")


class RolloutSpec(Strict):
    """A canary instead of the blue-green switch, on the embedded target (nginx in front of the
    environment) and rendered as an Argo Rollout on Kubernetes."""

    steps: list[RolloutStep] = Field(min_length=1, max_length=20)
    analysis: RolloutAnalysis = Field(default_factory=RolloutAnalysis)
    monitor_s: float = Field(
        default=60,
        ge=0,
        le=3600,
        description="after a deploy, the release's health also holds it to the analysis bounds "
        "over the front door's last monitor_s seconds of requests (the health gate and the "
        "health sensor, which rolls back a release that breaks them); 0: off",
    )

    @model_validator(mode="after")
    def _growing(self) -> RolloutSpec:
        weights = [s.weight for s in self.steps]
        if weights != sorted(set(weights)):
            raise ValueError(f"a rollout's weights grow from step to step: {weights}")
        return self


class Autoscaling(Strict):
    min_replicas: int = Field(default=2, ge=1, le=MAX_REPLICAS)
    max_replicas: int = Field(default=5, ge=1, le=MAX_REPLICAS)
    cpu_target: int = Field(
        default=70, ge=1, le=100, description="average CPU use, in % of the cpu request"
    )

    @model_validator(mode="after")
    def _ordered(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas {self.min_replicas} is above max_replicas {self.max_replicas}"
            )
        return self


class CanaryMetrics(Strict):
    """Where an Argo Rollouts analysis reads a canary's numbers on the cluster: a Prometheus and
    the queries of the two bounds. Placeholders: {service} (the canary Service) {namespace}.
    The defaults read ingress-nginx's request metrics."""

    prometheus: str = "http://prometheus.monitoring.svc:9090"
    error_rate_query: str = (
        'sum(rate(nginx_ingress_controller_requests{namespace="{namespace}",service="{service}",'
        'status=~"5.."}[1m])) / sum(rate(nginx_ingress_controller_requests{namespace='
        '"{namespace}",service="{service}"}[1m]))'
    )
    latency_p95_query: str = (
        "histogram_quantile(0.95, sum(rate(nginx_ingress_controller_request_duration_seconds_bucket"
        '{namespace="{namespace}",service="{service}"}[1m])) by (le)) * 1000'
    )


class KubernetesSpec(Strict):
    """How the Kubernetes target runs an app: a Deployment, a Service and an optional autoscaler.
    `image` and `namespace` may use {version} and {env}."""

    image: str = Field(
        default="",
        description="the image to run, a template ({version}, {env}); leave it out for an app "
        "with a Containerfile: each version runs the image its candidate was built as, by digest "
        "(the ledger's). Set, it is used only for versions built without an image",
    )
    namespace: str = "{env}"
    replicas: int = Field(default=2, ge=0, le=MAX_REPLICAS)
    port: Port = 8000
    health_path: str | None = Field(
        default=None, description="readiness and liveness probes; default: service.health_path"
    )
    resources: Resources = Field(default_factory=Resources)
    hpa: Autoscaling | None = None
    run_as_user: int = Field(
        default=10001, ge=0, description="0 is root: the manifest-policy gate refuses it"
    )
    privileged: bool = Field(
        default=False, description="the manifest-policy gate refuses privileged pods"
    )
    env: dict[str, str] = Field(default_factory=dict, description="over service.env")
    secrets: list[str] = Field(
        default_factory=list, description="Secrets whose keys become environment variables"
    )
    canary_metrics: CanaryMetrics = Field(
        default_factory=CanaryMetrics,
        description="with a rollout: where its AnalysisTemplate reads the canary's numbers",
    )

    @model_validator(mode="after")
    def _hpa_needs_a_cpu_request(self) -> KubernetesSpec:
        if self.hpa and not self.resources.requests.cpu:
            raise ValueError(
                "hpa scales on CPU use relative to the request: set resources.requests.cpu"
            )
        return self


class AppUnit(Unit):
    kind: ClassVar[str] = "app"
    repository: str = Field(description="a local path or any URL git can clone; may use {home}")
    path: str = Field(default=".", description="the app's folder inside the repository")
    branch: str = Field(default="main", description="the branch whose commits are built")
    serves: str | None = Field(
        default=None, description="the model unit whose per-environment version this app serves"
    )
    service: ServiceSpec = Field(default_factory=ServiceSpec)
    rollout: RolloutSpec | None = Field(
        default=None,
        description="a canary with analysis instead of the blue-green switch (deploys only; "
        "a rollback switches at once)",
    )
    kubernetes: KubernetesSpec | None = None
    dependencies: Literal["auto"] | list[str] | None = Field(
        default=None,
        description="The app's own dependencies, installed into an environment kept per digest "
        "of these files (in `path`) under {home}/venvs and reused by every commit with the same "
        "digest; the tests gate and the service then run with it ({python} is its interpreter, "
        "its bin/ comes first on PATH). `auto`: package-lock.json (npm ci), else uv.lock, else "
        "requirements*.txt, else pyproject.toml. A list names the files: requirements files, "
        "pyproject.toml, uv.lock or package-lock.json. Unset: the platform's own interpreter.",
    )
    test_command: list[str] = Field(
        default_factory=lambda: ["{python}", "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    )
    test_env: dict[str, str] = Field(
        default_factory=dict,
        max_length=TEST_ENV_MAX,
        description="Variables the tests gate sets for this app's suite, as literal values: "
        "nothing of the operator's environment reaches the suite. Not PATH, HOME, "
        "TMPDIR, LD_*, UD_* or PYTHON*.",
    )

    @field_validator("dependencies")
    @classmethod
    def _dependency_files(cls, v: str | list[str] | None) -> str | list[str] | None:
        if not isinstance(v, list):
            return v
        if not v or len(v) > DEPENDENCY_FILES_MAX:
            raise ValueError(f"name 1 to {DEPENDENCY_FILES_MAX} files, or write `auto`")
        for name in v:
            parts = PurePosixPath(name).parts
            if not name or PurePosixPath(name).is_absolute() or ".." in parts:
                raise ValueError(f"{name!r} is not a path inside the app's folder")
        return v

    @field_validator("test_env")
    @classmethod
    def _test_env(cls, v: dict[str, str]) -> dict[str, str]:
        for name, value in v.items():
            if not ENV_NAME_RE.match(name):
                raise ValueError(
                    f"{name!r} is not an environment variable name (letters, digits and _)"
                )
            if name in ("PATH", "HOME", "TMPDIR") or name.startswith(("LD_", "UD_", "PYTHON")):
                raise ValueError(
                    f"{name!r} is set by the tests gate itself or changes how programs load"
                )
            if len(value) > 4096 or "\0" in value:
                raise ValueError(
                    f"the value of {name} is longer than 4096 characters or holds a NUL"
                )
        return v

    def git_source(self) -> GitSource:
        return GitSource(repository=self.repository, branch=self.branch)
