"""The command line, end to end in subprocesses: every flag, the config file, bad input, dry run,
verify, and that passwords never appear anywhere."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pymongo
import pytest

from tests.conftest import ROOT, run_cli
from tests.support import servers

FLAG = re.compile(r"(--[a-z][a-z0-9-]+)")


def _flags(help_text: str) -> set[str]:
    return set(FLAG.findall(help_text))


def _parser_flags(parser) -> set[str]:
    import argparse
    out = set()
    for action in parser._actions:
        out.update(o for o in action.option_strings if o.startswith("--"))
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                out |= _parser_flags(sub)
    return out


def test_every_flag_is_documented_in_the_readme():
    from dbmigrate.cli import build_legacy_parser, build_parser
    documented = _flags((ROOT / "README.md").read_text())
    flags = _parser_flags(build_parser()) | _parser_flags(build_legacy_parser())
    assert {"--source", "--target", "--postgres-uri", "--mongodb-uri", "--config", "--dry-run",
            "--batch-size", "--report-json", "--no-progress", "--log-level"} <= flags
    assert not flags - documented, f"flags missing from README: {flags - documented}"
    for args in (["--help"], ["migrate", "--help"], ["verify", "--help"], ["analyze", "--help"]):
        assert run_cli(*args).returncode == 0
    assert run_cli("--help", script="run_migration").returncode == 0


def _readme_flag_table() -> dict[str, tuple[set[str], str]]:
    """flag -> (commands that take it, meaning) from the README's flag table."""
    out = {}
    for line in (ROOT / "README.md").read_text().splitlines():
        m = re.match(r"\| `(--[a-z-]+)[^`]*` \| ([a-z, ]+) \| (.*) \|$", line)
        if m:
            cmds = {c.strip() for c in m.group(2).split(",")}
            out[m.group(1)] = ((cmds - {"all"}) | {"migrate", "analyze", "verify"} if "all" in cmds else cmds, m.group(3))
    return out


def test_each_commands_help_lists_exactly_the_flags_the_readme_gives_it():
    """The README's flag table says which command takes each flag; each command's --help lists
    exactly those (no flag that does nothing for it), and no group is called 'options' twice."""
    table = _readme_flag_table()
    assert len(table) >= 15
    for command in ("migrate", "analyze", "verify", "sync"):
        res = run_cli(command, "--help")
        assert res.returncode == 0
        shown = _flags(res.stdout) - {"--help", "--sample-"}  # "--sample-" is a line-wrapped --sample-size
        wanted = {f for f, (cmds, _) in table.items() if command in cmds}
        assert shown == wanted, (command, shown ^ wanted)
        assert res.stdout.count("options:") == 1


def test_help_and_readme_name_every_source_and_target_kind():
    """--help and the README's --source / --target rows name every scheme parse_uri accepts,
    for both sides (the help once said 'to MongoDB' only and left MongoDB out of --source)."""
    from dbmigrate.errors import ConfigError
    from dbmigrate.uri import parse_uri
    schemes = ["postgresql://", "mysql://", "mariadb://", "sqlite:///", "mongodb://", "mongodb+srv://"]
    for scheme in schemes:  # every scheme named is one parse_uri takes
        tail = "/abs/x.db" if scheme == "sqlite:///" else "u@h/db"
        parse_uri(scheme + tail, role="source")
    with pytest.raises(ConfigError):
        parse_uri("oracle://u@h/db", role="source")
    table = _readme_flag_table()
    help_text = " ".join(run_cli("migrate", "--help").stdout.split())
    top = " ".join(run_cli("--help").stdout.split())
    assert "MongoDB" in top and "PostgreSQL" in top and "SQLite" in top and "MySQL" in top
    for flag in ("--source", "--target"):
        meaning = table[flag][1]
        section = help_text.split(f"{flag} URI")[-1].split(" --", 1)[0]  # its help, not the usage line
        for scheme in schemes:
            assert scheme in meaning, (flag, scheme)
            assert scheme.rstrip("/") in section.replace(" ", ""), (flag, scheme, section)


def test_version():
    res = run_cli("--version")
    assert res.returncode == 0 and res.stdout.startswith("dbmigrate ")


def test_missing_source_is_a_config_error():
    res = run_cli("migrate", "--target", "mongodb://127.0.0.1:1/x")
    assert res.returncode == 2
    assert "No source URI given" in res.stderr and "DBMIGRATE_SOURCE_URI" in res.stderr


def test_unsupported_scheme_is_named():
    res = run_cli("migrate", "--source", "oracle://u:pw@h/db", "--target", "mongodb://127.0.0.1:1/x")
    assert res.returncode == 2
    assert "Unsupported source URI scheme 'oracle'" in res.stderr and "pw" not in res.stderr


def test_mongodb_uri_without_database_is_refused(pg_source):
    res = run_cli("migrate", "--source", pg_source[0], "--target", "mongodb://127.0.0.1:27017")
    assert res.returncode == 2 and "names no database" in res.stderr


def test_unreachable_source_answers_within_10_seconds():
    t0 = time.time()
    # 10.255.255.1 is a non-routable address: the connection attempt hangs until the timeout.
    res = run_cli("migrate", "--source", "postgresql://u:topsecret@10.255.255.1:5432/db",
                  "--target", "mongodb://127.0.0.1:1/x", "--no-progress")
    elapsed = time.time() - t0
    assert res.returncode == 3, res.stderr
    assert "Cannot connect to source" in res.stdout + res.stderr
    assert elapsed < 20
    assert "topsecret" not in res.stdout + res.stderr


def test_not_an_mlflow_database_is_refused(pg_db, mongo_db):
    empty = pg_db()
    res = run_cli("migrate", "--source", empty, "--target", mongo_db(), "--no-progress")
    assert res.returncode == 4
    assert "is not an MLflow database" in res.stdout


def test_config_file_every_key(pg_source, mongo_db, tmp_path):
    """Each config key has an effect that the report shows."""
    target = mongo_db()
    report = tmp_path / "r.json"
    cfg = {"source": {"connection_uri": pg_source[0]},
           "destination": {"connection_uri": target, "layout": "mlflow-mongodb"},
           "migration_settings": {"batch_size": 10, "dry_run": False, "validate_data": True,
                                  "verify": "sample", "sample_size": 3, "report_json": str(report),
                                  "progress": False, "log_level": "WARNING"}}
    path = tmp_path / "c.json"
    path.write_text(json.dumps(cfg))
    res = run_cli("migrate", "--config", path)
    assert res.returncode == 0, res.stdout + res.stderr
    r = json.loads(report.read_text())
    assert r["settings"]["batch_size"] == 10 and r["settings"]["sample_size"] == 3
    metrics = next(t for t in r["tables"] if t["table"] == "metrics")
    assert metrics["batches"] == -(-metrics["total"] // 10)  # batch_size reached the reader
    values = {c["name"]: c["detail"] for c in r["verification"]["values"]}
    assert values["run_metrics (metrics)"] == "3/3 passed"   # sample_size reached the verifier
    assert "STEP" not in res.stderr                             # log_level WARNING
    assert r["target"] == target and r["layout"] == "mlflow-mongodb"


def test_config_validate_data_false_and_dry_run(pg_source, mongo_db, tmp_path):
    target = mongo_db()
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"source": {"connection_uri": pg_source[0]},
                                "destination": {"recommended": {"connection_uri": target}},
                                "migration_settings": {"validate_data": False}}))
    res = run_cli("migrate", "--config", path, "--report-json", tmp_path / "r.json", "--no-progress")
    assert res.returncode == 0, res.stdout + res.stderr
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["verification"] is None and "verify: skipped (--verify none)" in res.stderr
    # dry_run in the file; --dry-run absent on the command line
    path.write_text(json.dumps({"source": {"connection_uri": pg_source[0]},
                                "destination": {"connection_uri": mongo_db()},
                                "migration_settings": {"dry_run": True}}))
    res = run_cli("migrate", "--config", path, "--no-progress")
    assert res.returncode == 0 and "dbmigrate migrate --dry-run: DRY RUN" in res.stdout


def test_cli_flag_overrides_config_file(pg_source, mongo_db, tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"source": {"connection_uri": pg_source[0]},
                                "destination": {"connection_uri": "mongodb://127.0.0.1:1/unused"},
                                "migration_settings": {"batch_size": 5}}))
    target = mongo_db()
    res = run_cli("migrate", "--config", path, "--target", target, "--batch-size", "1000",
                  "--report-json", tmp_path / "r.json", "--no-progress", "--verify", "counts")
    assert res.returncode == 0, res.stdout + res.stderr
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["target"] == target and r["settings"]["batch_size"] == 1000
    assert r["verification"]["level"] == "counts" and not r["verification"]["values"]


@pytest.mark.parametrize("body, named", [
    ({"migration_settings": {"bogus": 1}}, "migration_settings.bogus"),
    ({"sourse": {}}, "'sourse'"),
    ({"destination": {"recommended": {"uri": "x"}}}, "destination.recommended.uri"),
    ({"migration_settings": {"batch_size": "many"}}, "migration_settings.batch_size"),
])
def test_bad_config_keys_are_named(tmp_path, body, named):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(body))
    res = run_cli("migrate", "--config", path)
    assert res.returncode == 2
    assert named in res.stderr


def test_bad_flag_values(pg_source):
    res = run_cli("migrate", "--source", pg_source[0], "--target", "mongodb://h/x", "--batch-size", "0")
    assert res.returncode == 2 and "batch_size must be a positive integer" in res.stderr
    res = run_cli("migrate", "--verify", "everything")
    assert res.returncode == 2 and "invalid choice" in res.stderr


def test_environment_variables_supply_the_uris(pg_source, mongo_db):
    target = mongo_db()
    res = run_cli("migrate", "--no-progress", "--verify", "counts",
                  env={"DBMIGRATE_SOURCE_URI": pg_source[0], "DBMIGRATE_TARGET_URI": target,
                       "DBMIGRATE_BATCH_SIZE": "20"})
    assert res.returncode == 0, res.stdout + res.stderr
    db = pymongo.MongoClient(target).get_default_database()
    assert db.runs.count_documents({}) == 6


def test_dry_run_leaves_the_target_untouched(pg_source, mongo_base):
    name = "dbm_dry_" + str(time.time_ns())
    target = servers.with_database(mongo_base, name)
    client = pymongo.MongoClient(mongo_base)
    res = run_cli("migrate", "--source", pg_source[0], "--target", target, "--dry-run", "--no-progress")
    assert res.returncode == 0, res.stdout + res.stderr
    assert name not in client.list_database_names()
    out = res.stdout
    assert "MLflow 3.17.0 \u2013 3.17.2 (alembic revision dc11669786a5)" in out
    assert "Plan (what goes where):" in out and "-> run_metrics" in out
    assert re.search(r"metrics\s+56\s+56", out)  # per-table counts, converted but not written
    assert "webhooks" in out and "Estimated migration time" in out
    assert "dry run: nothing was written to the target" in out
    res = run_cli("analyze", "--source", pg_source[0], "--target", target, "--no-progress")
    assert res.returncode == 0 and "DRY RUN" in res.stdout
    assert name not in client.list_database_names()


def test_non_empty_target_is_refused_and_left_alone(pg_source, mongo_db):
    target = mongo_db()
    db = pymongo.MongoClient(target).get_default_database()
    db.runs.insert_one({"_id": "someone-elses-run"})
    res = run_cli("migrate", "--source", pg_source[0], "--target", target, "--no-progress")
    assert res.returncode == 5
    assert "already holds data: runs (1 documents)" in res.stdout
    assert db.list_collection_names() == ["runs"] and db.runs.count_documents({}) == 1


def test_verify_command_and_a_tampered_target(pg_source, mongo_db, tmp_path):
    target = mongo_db()
    assert run_cli("migrate", "--source", pg_source[0], "--target", target, "--no-progress",
                   "--verify", "none").returncode == 0
    res = run_cli("verify", "--source", pg_source[0], "--target", target, "--verify", "full")
    assert res.returncode == 0 and "Verification (full): PASSED" in res.stdout
    db = pymongo.MongoClient(target).get_default_database()
    run_id = pg_source[1]["runs"]["deleted"]  # status KILLED in the source
    db.runs.update_one({"_id": run_id}, {"$set": {"status": "FAILED"}})
    res = run_cli("verify", "--source", pg_source[0], "--target", target, "--verify", "full",
                  "--report-json", tmp_path / "v.json")
    assert res.returncode == 7
    assert (f"FAILED runs (source runs key '{run_id}', _id '{run_id}') field status: "
            f"source 'KILLED', target 'FAILED'") in res.stdout
    assert "Status: FAILED" in res.stdout
    assert json.loads((tmp_path / "v.json").read_text())["verification"]["passed"] is False


def test_passwords_never_appear(pg_base, pg_source, mongo_server, tmp_path):
    """A migration with a password in every URI, and a failing one: the passwords appear in no
    output, report or error message."""
    pg_pw, mongo_pw = "Pg-S3cret-value", "Mongo-S3cret-value"
    role = "dbm_pw_" + str(time.time_ns())[-8:]
    dbname = pg_source[0].rsplit("/", 1)[1]
    servers.pg_admin_exec(pg_base, f"CREATE ROLE {role} LOGIN PASSWORD '{pg_pw}'")
    servers.pg_admin_exec(servers.pg_database(pg_base, dbname),
                          f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
    base, _ = mongo_server
    client = pymongo.MongoClient(base)
    user = "dbm_user_" + str(time.time_ns())[-8:]
    client.admin.command("createUser", user, pwd=mongo_pw, roles=["root"])
    host = base.split("://", 1)[1].split("/", 1)[0]
    src = pg_source[0].replace("postgres@", f"{role}:{pg_pw}@")
    target = f"mongodb://{user}:{mongo_pw}@{host}/dbm_pw_target?authSource=admin"
    report = tmp_path / "r.json"
    state_dir = tmp_path / "state"
    try:
        ok = run_cli("migrate", "--source", src, "--target", target, "--report-json", report,
                     "--log-level", "DEBUG", "--no-progress", "--state-dir", state_dir)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        bad_pw = run_cli("migrate", "--source", src, "--target",
                         target.replace(mongo_pw, mongo_pw + "-wrong"), "--no-progress")
        assert bad_pw.returncode == 3 and "refused the credentials" in bad_pw.stdout
        bad_cfg = run_cli("migrate", "--source", src.replace("postgresql", "postgres-typo"),
                          "--target", target)
        outputs = [ok.stdout, ok.stderr, report.read_text(), bad_pw.stdout, bad_pw.stderr,
                   bad_cfg.stdout, bad_cfg.stderr]
        state_files = list(state_dir.iterdir())
        assert state_files  # the checkpoint catalog was written
        outputs += [f.read_bytes().decode("latin-1") for f in state_files]
        for text in outputs:
            assert pg_pw not in text and mongo_pw not in text
        assert f"{role}:***@" in outputs[-1] or any(f"{role}:***@" in t for t in outputs[-len(state_files):])
        assert f"{role}:***@" in ok.stdout and f"{user}:***@" in ok.stdout
    finally:
        client.drop_database("dbm_pw_target")
        client.admin.command("dropUser", user)
        servers.pg_admin_exec(servers.pg_database(pg_base, dbname),
                              f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}")
        servers.pg_admin_exec(pg_base, f"DROP ROLE {role}")
