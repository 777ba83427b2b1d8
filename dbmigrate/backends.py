"""The ends dbmigrate knows, by URI kind: how to open a source (a Reader) and which target end
(a Writer with what goes around it) takes a target. Adding an end is one line in each table."""

from __future__ import annotations

from dbmigrate.config import Config
from dbmigrate.errors import ConfigError
from dbmigrate.uri import DatabaseURI


def _sql_source(cfg: Config, uri: DatabaseURI):
    from dbmigrate.readers.sql import SqlSource
    return SqlSource(uri, connect_timeout=cfg.connect_timeout).open()


def _mongo_source(cfg: Config, uri: DatabaseURI):
    from dbmigrate.readers.mongo import MongoSource
    return MongoSource(uri, connect_timeout=cfg.connect_timeout).open()


def _parquet_source(cfg: Config, uri: DatabaseURI):
    from dbmigrate.readers.parquet import ParquetSnapshot
    return ParquetSnapshot(uri.path).open()


def _filestore_source(cfg: Config, uri: DatabaseURI):
    from dbmigrate.readers.filestore import FileStoreSource
    return FileStoreSource(uri.path).open()


# URI kind -> opener of that source, read in one consistent snapshot.
SOURCES = {
    "postgresql": _sql_source, "mysql": _sql_source, "sqlite": _sql_source,
    "mongodb": _mongo_source,
    "parquet": _parquet_source,
    "file": _filestore_source,
}


def _sql_end():
    from dbmigrate.ends.sql import SqlEnd
    return SqlEnd


def _mongo_end():
    from dbmigrate.ends.mongo import MongoEnd
    return MongoEnd


def _parquet_end():
    from dbmigrate.ends.parquet import ParquetEnd
    return ParquetEnd


# URI kind -> the target end's class (imported when used).
TARGETS = {
    "postgresql": _sql_end, "mysql": _sql_end, "sqlite": _sql_end,
    "mongodb": _mongo_end,
    "parquet": _parquet_end,
}


def open_source(cfg: Config, uri: DatabaseURI):
    if uri.kind not in SOURCES:
        raise ConfigError(f"{uri.masked} cannot be read as a source (known sources: "
                          f"{', '.join(sorted(SOURCES))})")
    return SOURCES[uri.kind](cfg, uri)


def target_end(cfg: Config, uri: DatabaseURI):
    if uri.kind not in TARGETS:
        raise ConfigError(f"{uri.masked} cannot be written as a target (known targets: "
                          f"{', '.join(sorted(TARGETS))})")
    return TARGETS[uri.kind]()(cfg, uri)
