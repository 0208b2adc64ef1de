"""Extending the platform from a platform repository, without touching the framework: a new
kind of unit (a static site: its candidate is one HTML file, its target copies it into a
folder per environment) in one file plus one registration line, and a new gate family in one
file plus one registration line. A unit of the new kind, declared in YAML, goes to staging
and production through the real engine (Dagster runs on the home's instance, the ledger),
refused first by the new gate, then let through by it (docs/extending.md)."""

from __future__ import annotations

import contextlib
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import dagster as dg
import pytest

from unified_delivery.errors import ConfigError
from unified_delivery.gates import registry as gate_registry
from unified_delivery.home import Home
from unified_delivery.kinds import registry as kind_registry
from unified_delivery.service import load_platform, promote

# The kind, as a platform team writes it: unit model, translator, target and Kind record.
STATIC_SITE = '''
"""A static site: one HTML file, published by copying it into <home>/sites/<unit>/<env>/."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from unified_delivery.errors import TargetError
from unified_delivery.home import Home
from unified_delivery.kinds import Kind
from unified_delivery.kinds.base import BuildContext, KindTranslator
from unified_delivery.targets.base import Artifact, BaseTarget, Deployment, Health, Log
from unified_delivery.units import Unit


class SiteUnit(Unit):
    kind: ClassVar[str] = "static_site"
    page: str = Field(description="the HTML file to publish, relative to the unit's YAML file")


class SiteTranslator(KindTranslator):
    unit_class = SiteUnit

    def prepare_attributes(self, attributes: dict[str, Any], base_dir: Path) -> dict[str, Any]:
        page = attributes.get("page")
        if isinstance(page, str):
            attributes = {**attributes, "page": str((base_dir / page).resolve())}
        return attributes

    def validate(self, unit: Unit, units: dict[str, Unit]) -> None:
        assert isinstance(unit, SiteUnit)
        if not Path(unit.page).is_file():
            self.refuse(unit, "page", f"{unit.page} is not a file")

    def build_candidate(self, unit: Unit, ctx: BuildContext) -> Artifact:
        assert isinstance(unit, SiteUnit)
        content = Path(unit.page).read_bytes()
        digest = hashlib.sha256(content).hexdigest()
        built = ctx.home.builds / unit.name / digest[:12] / "index.html"
        built.parent.mkdir(parents=True, exist_ok=True)
        built.write_bytes(content)
        ctx.log(f"built {unit.name} {digest[:12]}")
        return Artifact(unit=unit.name, kind=unit.kind, version=digest[:12],
                        digest=f"sha256:{digest}", location=str(built),
                        details={"change_created_at": datetime.now(UTC).isoformat()})


class SiteTarget(BaseTarget):
    """Each environment is a folder whose index.html is replaced in one rename."""

    def _folder(self, unit: Any, env: str) -> Path:
        return Home.current().root / "sites" / unit.name / env

    def _state(self, unit: Any, env: str) -> dict:
        path = self._folder(unit, env) / "state.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def _publish(self, unit: Any, env: str, version: str) -> Deployment:
        folder, state = self._folder(unit, env), self._state(unit, env)
        tmp = folder / "index.html.tmp"
        shutil.copyfile(folder / "versions" / f"{version}.html", tmp)
        os.replace(tmp, folder / "index.html")
        now = datetime.now(UTC).isoformat()
        state = {"version": version, "previous": state.get("version"), "at": now}
        (folder / "state.json").write_text(json.dumps(state))
        return Deployment(unit=unit.name, env=env, version=version, deployed_at=now,
                          previous_version=state["previous"],
                          details={"path": str(folder / "index.html")})

    def _deploy(self, unit: Any, env: str, artifact: Artifact, current: Deployment | None,
                log: Log) -> Deployment:
        versions = self._folder(unit, env) / "versions"
        versions.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(artifact.location, versions / f"{artifact.version}.html")
        return self._publish(unit, env, artifact.version)

    def _rollback(self, unit: Any, env: str, to_version: str | None, current: Deployment | None,
                  log: Log) -> Deployment:
        wanted = to_version or self._state(unit, env).get("previous")
        if not wanted:
            raise TargetError("UD-TARGET-NO-PREVIOUS", f"{unit.name}/{env} has no previous version",
                              "give the version to roll back to")
        return self._publish(unit, env, wanted)

    def status(self, unit: Any, env: str) -> Deployment | None:
        state = self._state(unit, env)
        if not state:
            return None
        return Deployment(unit=unit.name, env=env, version=state["version"],
                          deployed_at=state["at"], previous_version=state["previous"],
                          details={"path": str(self._folder(unit, env) / "index.html")})

    def health(self, unit: Any, env: str) -> Health:
        page = self._folder(unit, env) / "index.html"
        return Health(page.is_file(), f"{page} {'is' if page.is_file() else 'is not'} published")


KIND = Kind(translator=SiteTranslator(), default_target=SiteTarget,
            dagster_kinds=frozenset({"html"}), yaml_types=("acme.StaticSite",))
'''

# The gate family: the page must say the words the unit's gate lists.
REQUIRED_WORDS = '''
"""A content gate: refuse a page that does not say every word its settings list."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from unified_delivery.gates import Gate, GateContext, GateResult, GateSettings


class Words(GateSettings):
    words: list[str] = Field(min_length=1, description="what the page must say, as written")


class RequiredWordsGate(Gate):
    type = "required-words"
    family = "content"
    kinds = ("static_site",)
    Settings = Words

    def evaluate(self, ctx: GateContext) -> GateResult:
        assert ctx.artifact is not None and isinstance(self.settings, Words)
        text = Path(ctx.artifact.location).read_text()
        missing = [w for w in self.settings.words if w not in text]
        if missing:
            return GateResult(False, "ACME-GATE-WORDS-MISSING",
                              f"the page does not say {', '.join(missing)}",
                              "write them on the page", {"missing": missing})
        return GateResult(True, "ACME-GATE-WORDS-PRESENT", "the page says every required word")
'''

DEFINITIONS = '''
from pathlib import Path

from unified_delivery import Platform, gates, kinds

from . import required_words, static_site

kinds.register(static_site.KIND)
gates.register(required_words.RequiredWordsGate)

platform = Platform.from_directory(Path(__file__).parent / "units")
defs = platform.definitions()
'''

UNIT = '''
type: acme.StaticSite
attributes:
  team: web
  page: ../../../site/index.html
  gates:
    - {type: required-words, settings: {words: [Pricing, Contact]}}
'''

UNIT_NAME = "home_page"


@contextlib.contextmanager
def registrations_undone() -> Iterator[None]:
    """What a platform repository registers stays with the test that loads it."""
    kinds, gates = dict(kind_registry._REGISTERED), dict(gate_registry._REGISTERED)
    try:
        yield
    finally:
        kind_registry._REGISTERED.clear()
        kind_registry._REGISTERED.update(kinds)
        gate_registry._REGISTERED.clear()
        gate_registry._REGISTERED.update(gates)


@pytest.fixture
def registries() -> Iterator[None]:
    with registrations_undone():
        yield


def write_platform(root: Path) -> Path:
    """A platform repository: the kind and the gate one file each, the registrations in its
    definitions module, one unit of the new kind in YAML, and the page it publishes."""
    files = {"pyproject.toml": '[tool.dagster]\nmodule_name = "acme_sites.definitions"\n',
             "acme_sites/__init__.py": "", "acme_sites/static_site.py": STATIC_SITE,
             "acme_sites/required_words.py": REQUIRED_WORDS,
             "acme_sites/definitions.py": DEFINITIONS,
             f"acme_sites/units/{UNIT_NAME}/defs.yaml": UNIT}
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(textwrap.dedent(text).lstrip())
    return root / "site" / "index.html"


@dataclass
class Story:
    platform: Any
    defs: dg.Definitions
    home: Home
    repo: Path
    outcomes: dict[str, Any] = field(default_factory=dict)
    # step -> environment -> the page it publishes after that step
    published: dict[str, dict[str, bytes | None]] = field(default_factory=dict)

    def ledger(self, **where):
        return self.platform.ledger.ledger().entries(unit=UNIT_NAME, **where)


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Story]:
    """The unit's life, each step a Dagster run on the home's instance: refused by the new gate,
    then to staging and to production."""
    root = tmp_path_factory.mktemp("extending")
    home = Home(root / "home")
    page = write_platform(root / "repo")
    page.parent.mkdir(parents=True)
    page.write_text("<h1>Acme</h1><p>Pricing</p>\n")  # no Contact yet
    with pytest.MonkeyPatch.context() as mp, registrations_undone():
        mp.setenv("UD_HOME", str(home.root))
        mp.setenv("DAGSTER_HOME", str(home.dagster_home))
        mp.delenv("UD_TOKEN", raising=False)
        platform, defs = load_platform(root / "repo")
        s = Story(platform, defs, home, repo=root / "repo")
        unit = platform.unit(UNIT_NAME)
        target = platform.target(unit, "staging")

        def step(name: str, run) -> None:
            s.outcomes[name] = run()
            deployed = {env: target.status(unit, env) for env in unit.environments}
            s.published[name] = {env: Path(dep.details["path"]).read_bytes() if dep else None
                                 for env, dep in deployed.items()}

        def to(env: str):
            return lambda: promote(platform, defs, UNIT_NAME, env, home=home)

        step("without Contact to staging", to("staging"))
        page.write_text("<h1>Acme</h1><p>Pricing</p><p>Contact</p>\n")
        step("with Contact to staging", to("staging"))
        step("to production", to("production"))
        instance = dg.DagsterInstance.get()
        yield s
        instance.dispose()
        for name in [m for m in sys.modules if m == "acme_sites" or m.startswith("acme_sites.")]:
            del sys.modules[name]


def test_a_kind_from_a_platform_repository_goes_to_production(story: Story):
    staged, produced = story.outcomes["with Contact to staging"], story.outcomes["to production"]
    assert staged.success, staged.error
    assert staged.materialized == [f"{UNIT_NAME}/candidate", f"{UNIT_NAME}/staging"]
    assert produced.success and produced.materialized == [f"{UNIT_NAME}/production"]
    page = b"<h1>Acme</h1><p>Pricing</p><p>Contact</p>\n"
    assert story.published["with Contact to staging"] == {"staging": page, "production": None}
    assert story.published["to production"] == {"staging": page, "production": page}
    unit = story.platform.unit(UNIT_NAME)
    version = story.platform.target(unit, "production").status(unit, "production").version
    promotions = [(e.env, e.version) for e in story.ledger(action="promotion")]
    assert promotions == [("staging", version), ("production", version)]
    assert story.platform.ledger.ledger().verify().ok


def test_the_kind_is_a_unit_like_any_other_in_dagster(story: Story):
    graph = story.defs.resolve_asset_graph()
    stages = [dg.AssetKey([UNIT_NAME, s]) for s in ("candidate", "staging", "production")]
    assert graph.get(stages[1]).parent_keys == {stages[0]}
    assert graph.get(stages[2]).parent_keys == {stages[1]}
    tags = graph.get(stages[0]).tags
    assert tags["ud/kind"] == "static_site" and "dagster/kind/html" in tags  # its Dagster kind
    checks = {c.name for c in graph.asset_check_keys if c.asset_key == stages[0]}
    assert checks == {"required_words", "policy"}
    unit = story.platform.unit(UNIT_NAME)
    # a relative path in the YAML file is relative to its folder (the kind's prepare_attributes)
    assert unit.page == str((story.repo / "site" / "index.html").resolve())


def test_a_gate_family_from_a_platform_repository_refuses_then_passes(story: Story):
    refused = story.outcomes["without Contact to staging"]
    assert not refused.success
    assert refused.error.code == "UD-GATE-REFUSED" and refused.error.exit_code == 3
    assert [c["code"] for c in refused.failed_checks] == ["ACME-GATE-WORDS-MISSING"]
    assert story.published["without Contact to staging"] == {"staging": None, "production": None}
    results = [(e.payload["gate"], e.payload["family"], e.payload["code"], e.payload["passed"])
               for e in story.ledger(action="gate") if e.payload["gate"] == "required_words"]
    assert results == [("required_words", "content", "ACME-GATE-WORDS-MISSING", False),
                       ("required_words", "content", "ACME-GATE-WORDS-PRESENT", True)]
    missing = next(e for e in story.ledger(action="gate")
                   if e.payload["code"] == "ACME-GATE-WORDS-MISSING")
    assert missing.payload["metadata"]["missing"] == ["Contact"]


def test_a_unit_of_a_kind_nobody_registered_is_refused():
    from unified_delivery import Platform
    from unified_delivery.units import Unit

    class Orphan(Unit):
        kind: ClassVar[str] = "orphan"

    with pytest.raises(ConfigError) as info:
        Platform([Orphan(name="lost", team="t")])
    assert info.value.code == "UD-CONFIG-KIND"
    assert "kind 'orphan' is not registered" in info.value.message


def test_a_kind_cannot_take_another_kinds_yaml_type(registries):
    from unified_delivery.kinds import Kind, register
    from unified_delivery.kinds.base import KindTranslator
    from unified_delivery.units import Unit

    class Copy(Unit):
        kind: ClassVar[str] = "copycat"

    class CopyTranslator(KindTranslator):
        unit_class = Copy

    with pytest.raises(ConfigError) as info:
        register(Kind(translator=CopyTranslator(), default_target=lambda: None,
                      yaml_types=("unified_delivery.App",)))
    assert info.value.code == "UD-CONFIG-KIND" and "the app kind's" in info.value.message


ENTRY_POINT_KIND = '''
from typing import ClassVar

from unified_delivery.kinds import Kind
from unified_delivery.kinds.base import KindTranslator
from unified_delivery.units import Unit


class NotebookUnit(Unit):
    kind: ClassVar[str] = "notebook"
    path: str


class NotebookTranslator(KindTranslator):
    unit_class = NotebookUnit


KIND = Kind(translator=NotebookTranslator(), default_target=lambda: None,
            yaml_types=("acme.Notebook",))
'''


def test_an_installed_distribution_adds_a_kind_through_its_entry_point(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, registries):
    # What `pip install` leaves on sys.path: the module and the distribution's metadata.
    (tmp_path / "acme_notebooks.py").write_text(ENTRY_POINT_KIND)
    meta = tmp_path / "acme_notebooks-1.0.dist-info"
    meta.mkdir()
    (meta / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-notebooks\nVersion: 1.0\n")
    entry_points = "[unified_delivery.kinds]\nnotebook = acme_notebooks:KIND\n"
    (meta / "entry_points.txt").write_text(entry_points)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(kind_registry, "_INSTALLED", None)  # read the entry points again
    assert kind_registry.kinds()["notebook"].unit_class.__name__ == "NotebookUnit"
    assert kind_registry.yaml_types()["acme.Notebook"] == "notebook"
    sys.modules.pop("acme_notebooks")  # monkeypatch forgets the entry points after the test
