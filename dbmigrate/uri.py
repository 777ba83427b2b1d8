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

# user:password@ in any scheme://... string
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@\s]*)@")
# password=... / pwd=... in query strings or key-value DSNs
_PW_PARAM = re.compile(r"(?i)\b(password|pwd|passwd|secret|token)=([^&\s;]+)")

SQL_KINDS = ("postgresql", "mysql", "sqlite")


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
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", str(text))
    text = _PW_PARAM.sub(lambda m: f"{m[1]}=***", text)
    with _SECRETS_LOCK:
        secrets = sorted(_SECRETS, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, "***")
    return text


@dataclass(frozen=True)
class DatabaseURI:
    """A parsed connection URI. `raw` keeps the password; never print it, print `masked`."""

    raw: str
    kind: str  # postgresql | mysql | sqlite | mongodb

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
    else:
        raise ConfigError(
            f"Unsupported {role} URI scheme {scheme or '(none)'!r} in {mask_uri(uri)}",
            hint="use postgresql://, mysql:// (or mariadb://), sqlite:///path or mongodb://")
    try:
        parts = urlsplit(uri)
        if parts.password:
            register_secret(unquote(parts.password))
            register_secret(parts.password)
    except ValueError as exc:
        raise ConfigError(f"Malformed {role} URI {mask_uri(uri)}: {exc}") from None
    for m in _PW_PARAM.finditer(uri):
        register_secret(unquote(m[2]))
    parsed = DatabaseURI(raw=uri, kind=kind)
    if kind == "mongodb" and not parsed.database:
        raise ConfigError(f"The {role} MongoDB URI {parsed.masked} names no database",
                          hint="add it to the path, e.g. mongodb://host:27017/mlflow")
    if kind in ("postgresql", "mysql") and not parsed.database:
        raise ConfigError(f"The {role} URI {parsed.masked} names no database",
                          hint="add it to the path, e.g. postgresql://host/mlflow")
    return parsed


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
