"""A data candidate's vars (`ud promote <data unit> --ref "{...}"`), tried the way an attacker
would: SQL pasted into a var to read the home's signing key through DuckDB's `read_text`.

Three walls, each tested on its own: the declared vars are checked before dbt runs (refused
with a code, nothing written); the reference model renders a date var only as a checked date
literal (a var that got past the check is a compile error); and dbt or warehouse text that
reaches an error message is redacted, so even a model that pastes the var cannot hand the key
back in the refusal. Plus: concurrent builds of one version each get a work folder of their own.

Real dbt on a real DuckDB file, in a copy of the reference project (tests/test_dbt_duckdb.py's
Lab), and the real `ud` against a copy of this platform.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_dbt_duckdb import MODEL, REFERENCE, SQL, Lab, edited

from unified_delivery.errors import ConfigError, UDError
from unified_delivery.governance import tokens
from unified_delivery.home import Home
from unified_delivery.kinds.base import BuildContext
from unified_delivery.kinds.data.translator import DataTranslator
from unified_delivery.kinds.data.vars import parse_vars
from unified_delivery.kinds.data.meta_units import units_from_dbt_meta
from unified_delivery.ledger import Ledger
from unified_delivery.loader import load_yaml_unit
from unified_delivery.targets.dbt_duckdb import RELEASES, DbtDuckDBTarget
from unified_delivery.kinds.data.unit import DataUnit
from unified_delivery.targets.routing import Targets

# The finding, as the agent sent it: close the quote and the cast, union a file read, comment out the rest.
SCALAR_READ = "2026-01-01' as date) union select read_text('{key}') --"
# The one that works on this DuckDB: read_text in a FROM clause, the key cast to a date so that
# the cast fails and DuckDB's error echoes the value it could not cast.
TABLE_READ = "2026-01-01' as date) as as_of_date union all select cast(content as date) from read_text('{key}') --"
PASTED = "    select cast('{{ var(\"as_of_date\") }}' as date) as as_of_date"  # the model before the fix


def yaml_ref(value: str) -> str:
    return "{as_of_date: " + json.dumps(value) + "}"


# -- the check before dbt (pure) ---------------------------------------------------------------

def unit_with(**vars_) -> DataUnit:
    return DataUnit(name="features", team="analytics", project="/nowhere", select="features", vars=vars_)


TYPED = unit_with(as_of_date={"type": "date"}, region={"type": "string", "pattern": "^[a-z]{2}$"},
                  tag={"type": "string"}, limit={"type": "integer", "min": 1, "max": 1000},
                  share={"type": "number", "min": 0, "max": 1}, full={"type": "boolean"},
                  mode={"type": "enum", "values": ["a", "b"]})


def test_declared_vars_arrive_typed():
    ref = "{as_of_date: 2026-11-01, region: no, tag: q4-2026, limit: 10, share: 0.5, full: true, mode: b}"
    got = parse_vars(TYPED, ref)
    # `no` stays the string it reads as (YAML 1.1 would make it false), 2026-11-01 the ISO text.
    assert got == {"as_of_date": "2026-11-01", "region": "no", "tag": "q4-2026", "limit": 10, "share": 0.5,
                   "full": True, "mode": "b"}
    assert type(got["limit"]) is int and type(got["as_of_date"]) is str
    assert parse_vars(TYPED, "") == parse_vars(TYPED, "{}") == {}


@pytest.mark.parametrize("ref, code", [
    (yaml_ref(SCALAR_READ.format(key="/home/ud/signing.key")), "UD-DATA-BAD-VAR-VALUE"),
    (yaml_ref(TABLE_READ.format(key="/home/ud/signing.key")), "UD-DATA-BAD-VAR-VALUE"),
    ("{as_of_date: not-a-date}", "UD-DATA-BAD-VAR-VALUE"),
    ("{as_of_date: 2026-02-30}", "UD-DATA-BAD-VAR-VALUE"),  # the shape of a date, not a day
    ("{as_of_date: '2026-01-01\n'}", "UD-DATA-BAD-VAR-VALUE"),  # `$` would match before the newline
    ("{as_of_date: 2026-01-01 00:00:00}", "UD-DATA-BAD-VAR-VALUE"),
    ("{as_of_date: {nested: '2026-01-01'}}", "UD-DATA-BAD-VAR-VALUE"),
    ("{as_of_date: ['2026-01-01']}", "UD-DATA-BAD-VAR-VALUE"),
    ("{as_of_date: null}", "UD-DATA-BAD-VAR-VALUE"),
    ("{region: \"no' or 1=1 --\"}", "UD-DATA-BAD-VAR-VALUE"),
    ("{region: NO}", "UD-DATA-BAD-VAR-VALUE"),
    ("{region: 12}", "UD-DATA-BAD-VAR-VALUE"),
    ("{tag: \"a'b\"}", "UD-DATA-BAD-VAR-VALUE"),  # no pattern declared: a word, never a quote
    ("{limit: 0}", "UD-DATA-BAD-VAR-VALUE"),
    ("{limit: '10'}", "UD-DATA-BAD-VAR-VALUE"),
    ("{limit: 1.5}", "UD-DATA-BAD-VAR-VALUE"),
    ("{limit: true}", "UD-DATA-BAD-VAR-VALUE"),
    ("{share: .nan}", "UD-DATA-BAD-VAR-VALUE"),
    ("{full: 'yes'}", "UD-DATA-BAD-VAR-VALUE"),
    ("{full: yes}", "UD-DATA-BAD-VAR-VALUE"),
    ("{mode: c}", "UD-DATA-BAD-VAR-VALUE"),
    ("{schema: main}", "UD-DATA-UNKNOWN-VAR"),
    ("{\"as_of_date') --\": 1}", "UD-DATA-UNKNOWN-VAR"),
    ("{1: 2}", "UD-DATA-UNKNOWN-VAR"),
    ("2026-11-01", "UD-DATA-BAD-VARS"),
    ("[as_of_date]", "UD-DATA-BAD-VARS"),
    ("{as_of_date: [", "UD-DATA-BAD-VARS"),
    ("{as_of_date: '" + "9" * 3000 + "'}", "UD-DATA-BAD-VARS"),
])
def test_a_bad_var_is_refused_with_its_code_and_without_its_value(ref, code):
    with pytest.raises(UDError) as refused:
        parse_vars(TYPED, ref)
    err = refused.value
    assert (err.code, err.exit_code) == (code, 2), err
    assert err.remediation
    text = err.message + err.remediation
    assert "read_text" not in text and "signing.key" not in text and "9" * 20 not in text, text
    # At most a short prefix of the value: the longest run of it a message may carry.
    assert len(err.message) < 200, err.message


def test_a_unit_that_declares_no_vars_accepts_none():
    with pytest.raises(UDError) as refused:
        parse_vars(unit_with(), "{as_of_date: 2026-11-01}")
    assert refused.value.code == "UD-DATA-UNKNOWN-VAR"
    assert "accepts: none" in refused.value.message


def test_a_refused_value_shows_a_redacted_prefix_only():
    secret = "ud1.abcdefghijkl.mnopqrstuvwx"  # a token pasted by mistake: a secret shape
    with pytest.raises(UDError) as refused:
        parse_vars(TYPED, "{region: " + json.dumps(secret) + "}")
    assert secret not in refused.value.message and "mnopqrst" not in refused.value.message
    assert "[redacted" in refused.value.message


@pytest.mark.parametrize("spec, problem", [
    ({"type": "date", "pattern": "x"}, "pattern applies to string"),
    ({"type": "enum"}, "lists its `values`"),
    ({"type": "string", "values": ["a"]}, "only an enum"),
    ({"type": "string", "pattern": "("}, "not a regular expression"),
    ({"type": "integer", "min": 5, "max": 1}, "above max"),
    ({"type": "string", "min": 1}, "min and max apply"),
    ({"type": "uuid"}, "type"),
    ({"type": "date", "defalt": "2026-01-01"}, "defalt"),
])
def test_a_bad_var_declaration_is_refused_at_load(tmp_path, spec, problem):
    path = tmp_path / "features.yaml"
    path.write_text("type: unified_delivery.data\nattributes:\n  name: customer_features\n"
                    f"  project: {REFERENCE}\n  select: customer_features\n"
                    f"  vars: {{as_of_date: {json.dumps(spec)}}}\n")
    with pytest.raises(ConfigError) as refused:
        load_yaml_unit(path)
    assert refused.value.code == "UD-CONFIG-UNIT"
    assert "field vars.as_of_date" in refused.value.message and problem in refused.value.message, refused.value


def test_the_reference_unit_declares_as_of_date_in_dbt_meta():
    # The YAML declaration names only the selection; the vars come from meta.ud, like the team.
    unit = load_yaml_unit(REFERENCE.parent / "assets" / "units" / MODEL / "defs.yaml")
    assert isinstance(unit, DataUnit) and set(unit.vars) == {"as_of_date"}
    assert unit.vars["as_of_date"].type == "date"


# -- real dbt on DuckDB ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Iterator[Lab]:
    """A copy of the reference project, its unit read from dbt meta (vars included), and a home
    holding a real signing key."""
    root = tmp_path_factory.mktemp("dbtvars")
    project = root / "project"
    shutil.copytree(REFERENCE, project, ignore=shutil.ignore_patterns("target", "logs", "*.duckdb", "*.duckdb.wal"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UD_HOME", str(root / "home"))
        mp.delenv("UD_SIGNING_KEY", raising=False)
        tokens.signing_key(Home.current())  # created the way the platform creates it
        (unit,) = [u for u in units_from_dbt_meta(project, set()) if u.name == MODEL]
        yield Lab(root=root, project=project, unit=unit, target=DbtDuckDBTarget(warehouse=str(root / "w.duckdb")))


@pytest.fixture(scope="module")
def key(lab) -> str:
    path = Home.current().root / "signing.key"
    assert path.exists()
    return path.read_text().strip()


def build(lab: Lab, ref: str, logs: list[str] | None = None):
    ctx = BuildContext(home=Home.current(), target=lab.target,
                       targets=Targets({"data": lab.target}),
                       units={lab.unit.name: lab.unit}, config={"ref": ref},
                       log=logs.append if logs is not None else (lambda _: None))
    return DataTranslator().build_candidate(lab.unit, ctx)


def work_folders(lab: Lab) -> set[Path]:
    builds = Home.current().builds / lab.unit.name
    return set(builds.iterdir()) if builds.exists() else set()


def audit_schemas(lab: Lab) -> set[str]:
    if not lab.warehouse.exists():
        return set()
    return {s for (s,) in lab.query("SELECT schema_name FROM information_schema.schemata")
            if s.startswith("ud_audit_") or s == RELEASES}


@pytest.fixture(scope="module")
def plain(lab):
    return build(lab, "")


# --ref values, `{key}` standing for the path of the home's signing key.
ATTACKS = {
    "the finding's payload": (yaml_ref(SCALAR_READ), "UD-DATA-BAD-VAR-VALUE"),
    "a payload that works": (yaml_ref(TABLE_READ), "UD-DATA-BAD-VAR-VALUE"),
    "a date that is no day": ("{as_of_date: 2026-13-45}", "UD-DATA-BAD-VAR-VALUE"),
    "a nested mapping": ("{as_of_date: {value: '2026-01-01'}}", "UD-DATA-BAD-VAR-VALUE"),
    "a list": ("{as_of_date: ['2026-01-01', x]}", "UD-DATA-BAD-VAR-VALUE"),
    "an undeclared var": ("{as_of_date: '2026-01-01', target_schema: main}", "UD-DATA-UNKNOWN-VAR"),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_an_attack_through_the_ref_is_refused_before_dbt_runs(lab, key, attack):
    path = str(Home.current().root / "signing.key")
    ref, code = ATTACKS[attack]
    ref = ref.replace("{key}", path)
    folders, schemas = work_folders(lab), audit_schemas(lab)
    with pytest.raises(UDError) as refused:
        build(lab, ref)
    assert refused.value.code == code
    assert refused.value.exit_code == 2
    assert key not in str(refused.value) and path not in str(refused.value)
    # dbt never started: no work folder, nothing new in the warehouse.
    assert work_folders(lab) == folders
    assert audit_schemas(lab) == schemas


def test_the_model_refuses_to_render_a_var_that_bypassed_the_check(lab, key):
    path = str(Home.current().root / "signing.key")
    before = work_folders(lab)
    with pytest.raises(UDError) as refused:
        lab.target.write(lab.unit, "bypass", models=[MODEL], dbt_vars={"as_of_date": TABLE_READ.format(key=path)})
    err = refused.value
    # dbt renders the model when it parses the project: the macro stops the whole call there.
    assert (err.code, err.exit_code) == ("UD-DATA-DBT-DID-NOT-RUN", 5)
    assert "Compilation Error" in err.message and "as_of_date is not a date" in err.message, err.message
    assert key not in str(err) and "read_text" not in err.message
    # The failed call's folder is kept for its log and named in the remediation.
    (kept,) = work_folders(lab) - before
    assert str(kept) in err.remediation
    log = (kept / "dbt.log").read_text()
    assert "Compilation Error" in log and key not in log
    assert kept.stat().st_mode & 0o077 == 0, "the work folder is the home owner's alone"
    # No SQL ran: not even the seeds reached the audit schema.
    assert lab.target.audit_schema(lab.unit, "bypass") not in audit_schemas(lab)
    assert lab.target.status(lab.unit, "staging") is None


def test_a_model_that_pastes_the_var_cannot_hand_the_key_back_in_the_error(lab, key):
    """The last wall on its own: the model as it was before the fix, the check bypassed. The
    attack works (the kept dbt log, private to the home's owner, has the key DuckDB echoed),
    yet the error message, bound for the ledger and the caller, has it redacted."""
    path = str(Home.current().root / "signing.key")
    before = work_folders(lab)
    with edited(lab.project / SQL, "    select {{ date_var('as_of_date') }} as as_of_date", PASTED), \
            pytest.raises(UDError) as refused:
        lab.target.write(lab.unit, "pasted", models=[MODEL], dbt_vars={"as_of_date": TABLE_READ.format(key=path)})
    err = refused.value
    assert err.code == "UD-DATA-BUILD-FAILED"
    (kept,) = work_folders(lab) - before
    assert key in (kept / "dbt.log").read_text(), "the attack did not reach the key: this test proves nothing"
    assert key not in str(err) and key[:16] not in str(err)
    assert "[redacted]" in err.message, err.message


def test_a_valid_date_var_builds_another_version(lab, plain):
    logs: list[str] = []
    dated = build(lab, "{as_of_date: 2026-06-30}", logs)
    assert dated.version != plain.version
    assert dated.details["vars"] == {"as_of_date": "2026-06-30"}
    assert build(lab, "{as_of_date: '2026-06-30'}").version == dated.version  # quoted or not: one value

    def stats(schema: str) -> tuple:
        return lab.query(f'SELECT sum(order_count), max(tenure_days) FROM "{schema}"."{MODEL}"')[0]

    (orders_then, tenure_then), (orders_now, tenure_now) = stats(dated.location), stats(plain.location)
    assert orders_then < orders_now and tenure_then < tenure_now  # computed as of June, not October
    used = [Path(m.split(" in ", 2)[-1]) for m in logs if m.startswith("dbt build")]
    assert used and not any(f.exists() for f in used), "a successful build's folder is removed"


def test_concurrent_writes_of_one_version_each_have_their_own_work_folder(lab, plain):
    logs: dict[int, list[str]] = {0: [], 1: []}
    results: dict[int, object] = {}

    def write(i: int) -> None:
        try:
            results[i] = lab.target.write(lab.unit, "twice", models=[MODEL], log=logs[i].append)
        except UDError as exc:  # reported below, with the other thread's outcome
            results[i] = exc

    threads = [threading.Thread(target=write, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    assert len(results) == 2 and not any(isinstance(r, UDError) for r in results.values()), results
    assert results[0].details["rows"] == results[1].details["rows"] == plain.details["rows"]
    folders = [next(m.split(" in ", 2)[-1] for m in logs[i] if m.startswith("dbt build")) for i in (0, 1)]
    assert folders[0] != folders[1], "two builds shared a work folder"
    assert not any(Path(f).exists() for f in folders), "a successful build's folder is removed"
    # dbt wrote nothing into the project: no logs/, no run results next to the manifest.
    assert not (lab.project / "logs").exists()
    assert not (lab.project / "target" / "run_results.json").exists()


# -- the whole path: `ud promote` -------------------------------------------------------------

def test_ud_promote_refuses_the_attack_and_records_no_secret(platform_copy, run_ud, tmp_path):
    from unified_delivery.governance import tokens
    from unified_delivery.home import Home

    home = tmp_path / "attacker-home"
    key = tokens.signing_key(Home(home)).decode()  # the key the attacker is after
    path = str(home / "signing.key")
    ref = yaml_ref(TABLE_READ.format(key=path))
    proc = run_ud("promote", MODEL, "--to", "staging", "--ref", ref, "--json", project=platform_copy, home=home,
                  timeout=300)
    assert proc.returncode == 2, proc.stdout + proc.stderr[-3000:]
    error = json.loads(proc.stdout)["error"]
    assert error["code"] == "UD-DATA-BAD-VAR-VALUE", error
    assert key not in proc.stdout + proc.stderr and "read_text" not in proc.stdout
    # Refused before any run existed: nothing built, nothing published, nothing stored.
    assert not (home / "builds" / MODEL).exists()
    warehouse = home / "warehouse.duckdb"
    if warehouse.exists():
        import duckdb

        with duckdb.connect(str(warehouse), read_only=True) as con:
            schemas = {s for (s,) in con.execute("SELECT schema_name FROM information_schema.schemata").fetchall()}
        assert not {s for s in schemas if s.startswith("ud_audit_") or s in ("staging", RELEASES)}
    ledger = Ledger(f"sqlite:///{home / 'ledger.db'}")
    try:
        entries = ledger.entries()
    finally:
        ledger.dispose()
    actions = [e.action for e in entries]
    assert "candidate" not in actions and "promotion" not in actions, actions
    stored = json.dumps([e.payload for e in entries])
    assert key not in stored and "read_text" not in stored and not re.search(r"union\s+select", stored), stored
