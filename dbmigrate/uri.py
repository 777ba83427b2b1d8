"""Connection URIs: what kind of database a URI names, how to open it, and how to print it without
its password. Every URI that reaches a log line, report, state file or exception goes through
`mask_uri` / `mask_text`."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

from dbmigrate.errors import ConfigError

_SECRETS: set[str] = set()
_SECRETS_LOCK = threading.Lock()

# scheme://<rest>: the rest runs to whitespace, a quote or bracket, or the next scheme://. Its
# userinfo is everything up to the LAST "@" in it, so an unencoded "@", ":" or "/" in a password
# is masked too (a malformed URI must not decide how much of its password is printed).
_URI = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<rest>(?:(?![A-Za-z][A-Za-z0-9+.\-]*://)[^\s\"'<>])*)")
# Characters that must be percent-encoded in a URI's user name or password.
RESERVED_IN_USERINFO = "@/?#[]"
# password=... / pwd=... in query strings or key-value DSNs
_PW_PARAM = re.compile(r"(?i)\b(password|pwd|passwd|secret|token)=([^&\s;]+)")

SQL_KINDS = ("postgresql", "mysql", "sqlite")
# Kinds whose URI names a local path, not a server: a SQLite file, a Parquet snapshot directory,
# an MLflow FileStore (mlruns) directory.
PATH_KINDS = ("sqlite", "parquet", "file")
# What --help and the README name as the accepted sources and targets.
SCHEME_NAMES = ("postgresql://user:pw@host:5432/db", "mysql:// or mariadb://user:pw@host:3306/db",
                "sqlite:////abs/path.db", "parquet:///abs/dir (a dbmigrate Parquet snapshot)",
                "mongodb:// or mongodb+srv://user:pw@host:27017/db (MongoDB, "
                "Azure Cosmos DB or another MongoDB-wire server; the database must be named)")


def register_secret(secret: str | None) -> None:
    """Remember a password so that it is masked wherever it appears, even outside a URI."""
    if secret and len(secret) >= 3:
        with _SECRETS_LOCK:
            _SECRETS.add(secret)
            _SECRETS.add(quote(secret, safe=""))


def mask_uri(uri: str | None) -> str:
    if uri is None:
        return ""
    return mask_text(uri)


def mask_text(text: str) -> str:
    """Replace every password-like part of `text` with ***."""
    if not text:
        return text
    text = _URI.sub(_mask_match, str(text))
    text = _PW_PARAM.sub(lambda m: f"{m[1]}=***", text)
    with _SECRETS_LOCK:
        secrets = sorted(_SECRETS, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, "***")
    return text


def _mask_match(m: re.Match) -> str:
    rest = m["rest"]
    at = rest.rfind("@")
    if at < 0:
        return m[0]
    userinfo, host = rest[:at], rest[at + 1:]
    user, colon, _ = userinfo.partition(":")
    if not colon:
        return m[0]
    return f"{m['scheme']}{user}:***@{host}"


def _userinfo_problem(uri: str) -> str | None:
    """Why the user name or password of `uri` cannot be read unambiguously, or None."""
    rest = uri.split("://", 1)[1] if "://" in uri else ""
    at = rest.rfind("@")
    if at < 0:
        return None
    userinfo = rest[:at]
    if any(c in userinfo for c in RESERVED_IN_USERINFO) or re.search(r"%(?![0-9A-Fa-f]{2})", userinfo):
        return "its user name or password holds characters that must be percent-encoded"
    return None


@dataclass(frozen=True)
class DatabaseURI:
    """A parsed connection URI. `raw` keeps the password; never print it, print `masked`."""

    raw: str
    kind: str  # postgresql | mysql | sqlite | mongodb | parquet | file

    @property
    def path(self) -> str | None:
        """The local path of a parquet:// snapshot directory or a file:// FileStore directory."""
        if self.kind not in ("parquet", "file"):
            return None
        rest = self.raw.split("://", 1)[1] if "://" in self.raw else self.raw
        return unquote(rest.split("?", 1)[0])

    @property
    def masked(self) -> str:
        return mask_uri(self.raw)

    @property
    def is_sql(self) -> bool:
        return self.kind in SQL_KINDS

    @property
    def database(self) -> str | None:
        if self.kind == "sqlite":
            return self.sqlite_path
        if self.kind in ("parquet", "file"):
            return self.path
        path = urlsplit(self.raw).path.lstrip("/")
        return unquote(path.split("/")[0]) if path else None

    @property
    def sqlite_path(self) -> str | None:
        if self.kind != "sqlite":
            return None
        rest = self.raw.split(":///", 1)[1] if ":///" in self.raw else ""
        return rest.split("?", 1)[0] or ":memory:"

    def sqlalchemy_url(self) -> str:
        """The URL for SQLAlchemy, choosing a driver that is installed when none is named."""
        scheme, sep, rest = self.raw.partition("://")
        base = scheme.split("+", 1)[0].lower()
        if self.kind == "postgresql":
            driver = scheme.split("+", 1)[1] if "+" in scheme else _pick_pg_driver()
            return f"postgresql+{driver}://{rest}"
        if self.kind == "mysql":
            driver = scheme.split("+", 1)[1] if "+" in scheme else _pick_mysql_driver()
            return f"{base}+{driver}://{rest}"
        return self.raw


def parse_uri(uri: str | None, *, role: str) -> DatabaseURI:
    """Parse a source/target URI; `role` names it in errors ("source", "target")."""
    if not uri or not str(uri).strip():
        raise ConfigError(f"No {role} URI given",
                          hint=f"pass --{role} (or DBMIGRATE_{role.upper()}_URI)")
    uri = str(uri).strip()
    if role == "source" and "://" not in uri and uri.startswith("/"):
        uri = "file://" + uri  # a plain absolute path: an MLflow FileStore (mlruns) directory
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    base = scheme.split("+", 1)[0]
    if base in ("postgresql", "postgres"):
        kind = "postgresql"
        if base == "postgres":
            uri = "postgresql" + uri[len("postgres"):]
    elif base in ("mysql", "mariadb"):
        kind = "mysql"
    elif base == "sqlite":
        kind = "sqlite"
    elif base in ("mongodb", "mongodb+srv") or scheme == "mongodb+srv":
        kind = "mongodb"
    elif base == "parquet":
        kind = "parquet"
    elif base == "file":
        kind = "file"
    else:
        raise ConfigError(
            f"Unsupported {role} URI scheme {scheme or '(none)'!r} in {mask_uri(uri)}",
            hint="use postgresql://, mysql:// (or mariadb://), sqlite:///path, mongodb://, "
                 "parquet:///path (a snapshot directory) or, as a source, file:///path/mlruns (an MLflow "
                 "FileStore)")
    rest = uri.split("://", 1)[1]
    if kind in ("parquet", "file"):
        parsed = DatabaseURI(raw=uri, kind=kind)
        if not parsed.path or not parsed.path.startswith("/"):
            raise ConfigError(f"The {role} URI {uri} names no absolute directory",
                              hint=f"write it as {kind}:///absolute/path (three slashes)")
        return parsed
    if "@" in rest and kind != "sqlite":  # remember the password however malformed the URI, before any error names it
        secret = rest[:rest.rfind("@")].partition(":")[2]
        register_secret(secret)
        register_secret(unquote(secret))
    problem = None if kind == "sqlite" else _userinfo_problem(uri)
    if problem:
        raise ConfigError(
            f"Malformed {role} URI {mask_uri(uri)}: {problem}",
            hint="Write @ as %40, : as %3A, / as %2F, ? as %3F, # as %23, % as %25 (for example "
                 "python3 -c 'import urllib.parse,getpass; print(urllib.parse.quote(getpass.getpass(), safe=\"\"))')")
    try:
        parts = urlsplit(uri)
        if parts.password:
            register_secret(unquote(parts.password))
            register_secret(parts.password)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ConfigError(f"Malformed {role} URI {mask_uri(uri)}: the host's port is not a number "
                          "between 0 and 65535",
                          hint="Write it as scheme://user:password@host:port/database; "
                               "percent-encode reserved characters in the password") from None
    for m in _PW_PARAM.finditer(uri):
        register_secret(unquote(m[2]))
    parsed = DatabaseURI(raw=uri, kind=kind)
    if kind == "mongodb" and not parsed.database:
        raise ConfigError(f"The {role} MongoDB URI {parsed.masked} names no database",
                          hint="add it to the path, e.g. mongodb://host:27017/mlflow")
    if kind == "mongodb":
        _check_mongo_database_name(parsed.database, role, parsed.masked)
    if kind in ("postgresql", "mysql") and not parsed.database:
        raise ConfigError(f"The {role} URI {parsed.masked} names no database",
                          hint="add it to the path, e.g. postgresql://host/mlflow")
    return parsed


# Characters MongoDB forbids in a database name (on any platform), and its length limit in bytes.
MONGO_FORBIDDEN = '/\\. "$*<>:|?\0'
MONGO_MAX_NAME_BYTES = 63


def _check_mongo_database_name(name: str, role: str, masked: str) -> None:
    bad = next((c for c in name if c in MONGO_FORBIDDEN), None)
    if bad is not None:
        shown = {" ": "a space", "\0": "a NUL byte"}.get(bad, repr(bad))
        raise ConfigError(f"The {role} MongoDB URI {masked} names database {name!r}, which MongoDB cannot "
                          f"hold: it contains {shown}",
                          hint="MongoDB database names cannot contain / \\ . space \" $ * < > : | ? "
                               "(pymongo would silently cut the name at the first '.')")
    if len(name.encode("utf-8")) > MONGO_MAX_NAME_BYTES:
        raise ConfigError(f"The {role} MongoDB database name {name!r} is {len(name.encode('utf-8'))} bytes "
                          f"long; MongoDB allows at most {MONGO_MAX_NAME_BYTES}")


DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306, "mongodb": 27017}


def _endpoints(uri: DatabaseURI) -> set[tuple[str, int]]:
    """(address, port) pairs a URI's host list can reach; loopback and this machine's own names
    all count as one address, "local", as does an empty host (a local socket)."""
    import socket
    rest = uri.raw.split("://", 1)[1]
    hostlist = rest.split("/", 1)[0].split("?", 1)[0]
    hostlist = hostlist[hostlist.rfind("@") + 1:]
    local_names = {"localhost", "", socket.gethostname().lower()}
    out = set()
    for item in hostlist.split(","):
        if item.startswith("["):
            host, _, port = item[1:].partition("]")
            port = port.lstrip(":")
        else:
            host, _, port = item.partition(":")
        host = unquote(host).lower()
        port_n = int(port) if port.isdigit() else DEFAULT_PORTS.get(uri.kind, 0)
        addrs = {host}
        if host not in local_names:
            try:
                addrs = {ai[4][0] for ai in socket.getaddrinfo(host, None)}
            except OSError:
                pass
        for a in addrs:
            local = a in local_names or a.startswith("127.") or a == "::1"
            out.add(("local" if local else a, port_n))
    return out


def same_database(a: DatabaseURI, b: DatabaseURI) -> bool:
    """Whether two URIs name the same database on the same server, however spelled
    (localhost / 127.0.0.1, default ports, a relative / absolute / symlinked SQLite path)."""
    import os
    if a.kind != b.kind:
        return False
    if a.kind in ("parquet", "file"):
        return os.path.realpath(a.path) == os.path.realpath(b.path)
    if a.kind == "sqlite":
        pa, pb = a.sqlite_path, b.sqlite_path
        if ":memory:" in (pa, pb):
            return False
        if os.path.exists(pa) and os.path.exists(pb):
            return os.path.samefile(pa, pb)
        return os.path.realpath(pa) == os.path.realpath(pb)
    da, db = a.database or "", b.database or ""
    if (da.lower() != db.lower()) if a.kind == "mysql" else (da != db):
        return False
    return bool(_endpoints(a) & _endpoints(b))


def _pick_pg_driver() -> str:
    for module, driver in (("psycopg2", "psycopg2"), ("psycopg", "psycopg")):
        try:
            __import__(module)
            return driver
        except ImportError:
            continue
    raise ConfigError("No PostgreSQL driver installed", hint="pip install psycopg2-binary")


def _pick_mysql_driver() -> str:
    for module, driver in (("pymysql", "pymysql"), ("MySQLdb", "mysqldb"),
                           ("mysql.connector", "mysqlconnector")):
        try:
            __import__(module)
            return driver
        except ImportError:
            continue
    raise ConfigError("No MySQL/MariaDB driver installed", hint="pip install pymysql")
