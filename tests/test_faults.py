"""Transient faults, produced by a real server where it can: SecantusDB's `failCommand` fail point
(the same as mongod's) makes inserts fail with Cosmos DB's throttling code 16500 or closes the
connection mid-command. Partial throttling of single documents inside one bulk insert (Cosmos DB
reports it as write errors with RetryAfterMs) is something no server here can produce: that test
drives the writer with a stand-in collection and says so."""

from __future__ import annotations

import pymongo
import pytest
from pymongo.errors import BulkWriteError

from tests.conftest import run_cli
from tests.support import servers


@pytest.fixture
def faulty_server():
    server = servers.SecantusServer(test_commands=True).start()
    yield server
    server.stop()


def _arm(server, data, times):
    c = pymongo.MongoClient(server.uri)
    c.admin.command("configureFailPoint", "failCommand", mode={"times": times}, data=data)
    c.close()


@pytest.mark.parametrize("fault, times, log_line", [
    ({"failCommands": ["insert"], "errorCode": 16500}, 3, "Target throttled insert into"),
    ({"failCommands": ["insert"], "closeConnection": True}, 4, "Transient target error during insert into"),
])
def test_transient_insert_faults_are_retried(mlflow_source, faulty_server, fault, times, log_line):
    src, _ = mlflow_source("postgresql", 3)
    target = servers.with_database(faulty_server.uri, "faults")
    _arm(faulty_server, fault, times)
    res = run_cli("migrate", "--source", src, "--target", target, "--verify", "full", "--no-progress")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert log_line in res.stderr
    assert "Status: SUCCESS" in res.stdout


def test_persistent_throttling_stops_with_a_clear_error(mlflow_source, faulty_server):
    src, _ = mlflow_source("postgresql", 3)
    target = servers.with_database(faulty_server.uri, "throttled")
    _arm(faulty_server, {"failCommands": ["insert"], "errorCode": 16500}, 1000)
    res = run_cli("migrate", "--source", src, "--target", target, "--no-progress")
    assert res.returncode != 0
    assert "Failing command via 'failCommand' failpoint" in res.stdout + res.stderr


class _ThrottlingCollection:
    """Stand-in for a Cosmos DB collection that accepts a bulk insert only partly: the first call
    refuses every other document with error 16500 and RetryAfterMs=50 (a fault no server here can
    produce), later calls pass through to the real collection."""

    def __init__(self, real):
        self.real, self.calls, self.name = real, [], real.name

    def insert_many(self, docs, ordered=False):
        self.calls.append([d["_id"] for d in docs])
        if len(self.calls) == 1:
            keep = docs[::2]
            self.real.insert_many(keep, ordered=False)
            errors = [{"index": i, "code": 16500, "errmsg": "Request rate is large. RetryAfterMs=50"}
                      for i in range(1, len(docs), 2)]
            raise BulkWriteError({"writeErrors": errors, "nInserted": len(keep)})
        return self.real.insert_many(docs, ordered=False)


def test_partially_throttled_bulk_insert_resends_only_the_refused_documents(mongo_db):
    from dbmigrate.uri import parse_uri
    from dbmigrate.writers.mongo import MongoWriter
    target = mongo_db()
    writer = MongoWriter(parse_uri(target, role="target"))
    fake = _ThrottlingCollection(writer.db["c"])

    class DB:
        def __getitem__(self, name):
            return fake
    writer.db = DB()
    docs = [{"_id": i, "v": i} for i in range(10)]
    stats = writer.write("c", docs)
    assert fake.calls[0] == list(range(10))
    assert fake.calls[1] == [1, 3, 5, 7, 9]  # only the refused ones, after the wait
    assert stats.inserted == 10 and stats.throttled == 5
    assert sorted(d["_id"] for d in fake.real.find()) == list(range(10))
