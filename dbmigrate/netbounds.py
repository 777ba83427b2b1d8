"""How long dbmigrate waits for a database server: every connect and every read has a bound, but a
long legitimate statement (a COPY of millions of rows, a COUNT(*) or an index build that sends
nothing for minutes) is never cut.

* Connecting (TCP connect, the server's greeting, authentication, the session's first settings)
  takes at most `connect_timeout` (config, 10 s) per attempt, on every engine: PostgreSQL through
  libpq's `connect_timeout` (it covers the whole start-up), MongoDB through pymongo's server
  selection, MySQL/MariaDB through PyMySQL's `connect_timeout` (TCP connect only) *and* its
  read/write timeouts, which are set to `connect_timeout` while the connection is made (PyMySQL
  otherwise waits for the greeting forever: a server that accepts and never answers hung
  dbmigrate).
* After that, a statement may legitimately take any time, so a fixed read timeout would be wrong.
  What is bounded is a *silent peer*:
  - a host or network that is gone: TCP keepalives (PostgreSQL: libpq's `keepalives_*`;
    MySQL: the same socket options; pymongo sets its own) close the connection about
    KEEPALIVE_IDLE + KEEPALIVE_INTERVAL * KEEPALIVE_COUNT seconds after the peer stops
    acknowledging;
  - MySQL/MariaDB, a server process that is alive to the kernel but stopped answering (frozen,
    swapped out, stopped): when a read has waited STALL_PROBE_SECONDS for the server's answer,
    dbmigrate opens a second connection to the same server and waits up to `connect_timeout` for
    its greeting. A server that greets is working on the statement, and the wait goes on (probed
    again every STALL_PROBE_SECONDS); one that does not is declared silent and the statement
    fails with STOPPED in its message (the source: exit 3 at once; the target: retried like any
    lost connection, each retry's connect bounded by `connect_timeout`, then exit 3). A write
    that cannot be handed to the server for WRITE_STALL_SECONDS fails too (a live server reads
    a statement as soon as it is sent).
  PostgreSQL's libpq has no per-read hook (psycopg2's wait callbacks exclude COPY), and its
  server runs each session in its own process, so a frozen whole server is a dead host in
  practice: keepalives bound it. `tcp_user_timeout` is not set: it would also cut a live target
  that stops reading a COPY for a while (a lock wait), which is legitimate; data sent to a host
  that vanished is given up by the kernel's retransmission limit (Linux: ~15 minutes).
  MongoDB: pymongo sets keepalives itself (at most 120 s idle); the writer's operations are
  bounded by socketTimeoutMS (300 s); the reader's are not (a count of a big collection may
  legitimately take minutes).
"""

from __future__ import annotations

import io
import socket
import time

KEEPALIVE_IDLE = 30        # seconds of silence before the first probe
KEEPALIVE_INTERVAL = 10    # seconds between probes
KEEPALIVE_COUNT = 3        # unanswered probes before the connection is closed
STALL_PROBE_SECONDS = 30   # MySQL: a read waiting this long checks that the server still answers
WRITE_STALL_SECONDS = 60   # MySQL: a statement the server does not take in this long fails

STOPPED = "server stopped answering"


def pg_connect_args(connect_timeout: int) -> dict:
    """libpq parameters: the start-up bound and keepalives (see the module docstring)."""
    return {"connect_timeout": connect_timeout, "keepalives": 1, "keepalives_idle": KEEPALIVE_IDLE,
            "keepalives_interval": KEEPALIVE_INTERVAL, "keepalives_count": KEEPALIVE_COUNT}


def set_keepalive(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", KEEPALIVE_IDLE), ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL),
                        ("TCP_KEEPCNT", KEEPALIVE_COUNT)):
        opt = getattr(socket, name, None)
        if opt is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, opt, value)
            except OSError:  # a platform without it: the system's keepalive times apply
                pass


def server_greets(host: str, port: int, timeout: float) -> bool:
    """True when a new TCP connection to host:port gets the MySQL server's greeting (any packet,
    an error such as too many connections included) within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(max(0.1, deadline - time.monotonic()))
            return bool(s.recv(4))
    except OSError:
        return False


class _ProbingReader(io.RawIOBase):
    """The raw stream under a MySQL connection's buffered reader: a read that waits longer than
    the socket's timeout (STALL_PROBE_SECONDS) checks that the server still greets a new
    connection, and waits on if it does. (A timeout inside the socket's own makefile() stream
    would leave it unusable; here nothing was consumed, so the read is simply tried again.)"""

    def __init__(self, conn):
        super().__init__()
        self.conn = conn

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        waited = 0.0
        while True:
            sock = self.conn._sock
            if sock is None:
                raise OSError("connection closed")
            try:
                return sock.recv_into(buf)
            except InterruptedError:
                continue
            except socket.timeout:
                waited += sock.gettimeout() or 0.0
                timeout = self.conn._dbm_connect_timeout
                if not server_greets(self.conn.host, self.conn.port, timeout):
                    raise OSError(f"{STOPPED}: no reply for {waited:.0f} s, and a new connection "
                                  f"got no greeting within {timeout} s") from None


_DEFAULT_SSL_CTX: dict = {}


def mysql_connection_class(connect_timeout: int):
    """A PyMySQL Connection whose start-up is bounded by `connect_timeout` and whose reads probe
    the server when they wait long (see the module docstring)."""
    import pymysql.connections

    install_infile_hook()

    class BoundedConnection(pymysql.connections.Connection):
        # LOAD DATA LOCAL INFILE: the (name, bytes) being sent, else None. A dbmigrate connection
        # sends the server no file but that buffer, whatever file the server asks for.
        dbmigrate_infile = None

        def __init__(self, *args, **kwargs):
            self._dbm_connect_timeout = connect_timeout
            kwargs["connect_timeout"] = connect_timeout
            kwargs["read_timeout"] = kwargs["write_timeout"] = connect_timeout
            super().__init__(*args, **kwargs)

        def _create_ssl_ctx(self, sslp):
            # PyMySQL's default "SSL preferred" mode builds a new default context, loading the
            # system's certificates, for every connection: 46 ms each (the profile of issue 10,
            # 9f). The context with no options is the same every time: build it once.
            if sslp:
                return super()._create_ssl_ctx(sslp)
            if _DEFAULT_SSL_CTX.get("ctx") is None:
                _DEFAULT_SSL_CTX["ctx"] = super()._create_ssl_ctx(sslp)
            return _DEFAULT_SSL_CTX["ctx"]

        def connect(self, sock=None):
            # The greeting, authentication and session set-up: connect_timeout for each read.
            self._read_timeout = self._write_timeout = self._dbm_connect_timeout
            try:
                super().connect(sock)
            except pymysql.err.OperationalError as exc:
                if "timed out" not in str(exc):
                    raise
                raise pymysql.err.OperationalError(
                    exc.args[0], f"no answer within {self._dbm_connect_timeout} s: the server "
                    "accepted the connection but did not complete the MySQL handshake") from None
            if self.unix_socket:
                self._read_timeout = self._write_timeout = None
                return
            # Connected: statements take as long as they need while the server answers.
            set_keepalive(self._sock)
            self._read_timeout = STALL_PROBE_SECONDS
            self._write_timeout = WRITE_STALL_SECONDS
            self._rfile = io.BufferedReader(_ProbingReader(self))

    return BoundedConnection


def bound_mysql_engine(engine, connect_timeout: int) -> None:
    """Make every connection of a SQLAlchemy MySQL engine a BoundedConnection (PyMySQL only)."""
    if engine.dialect.driver != "pymysql":
        return
    import sqlalchemy as sa
    cls = mysql_connection_class(connect_timeout)

    @sa.event.listens_for(engine, "do_connect")
    def _connect(dialect, conn_rec, cargs, cparams):
        return cls(*cargs, **cparams)


def bounded_engine(url: str, connect_timeout: int = 10, **kwargs):
    """sa.create_engine with the bounds of this module for PostgreSQL and MySQL URLs."""
    import sqlalchemy as sa
    parsed = sa.engine.make_url(url)
    name = parsed.get_backend_name()
    args = dict(kwargs.pop("connect_args", {}))
    if name == "postgresql":  # libpq keywords: psycopg2 and psycopg 3 alike
        args = {**pg_connect_args(connect_timeout), **args}
    elif name in ("mysql", "mariadb") and parsed.get_driver_name() != "pymysql":
        args.setdefault("connect_timeout", connect_timeout)  # other drivers: the TCP connect at least
    engine = sa.create_engine(url, connect_args=args, **kwargs)
    if name in ("mysql", "mariadb"):
        bound_mysql_engine(engine, connect_timeout)
    return engine


def install_infile_hook() -> bool:
    """Make PyMySQL's LOAD DATA LOCAL INFILE send a dbmigrate connection's in-memory buffer
    (``conn.dbmigrate_infile = (name, data)``) instead of reading a file, and refuse every other
    file the server asks such a connection for (a server may ask a client with local_infile for
    any file: with this, a dbmigrate connection can give it nothing but the batch it is loading).
    Connections that are not dbmigrate's keep PyMySQL's own behaviour. False when this PyMySQL has
    no such hook (then the MySQL writer uses INSERT)."""
    import pymysql.connections as pc
    original = getattr(pc, "_send_local_file", None)
    if original is None:
        return False
    if getattr(original, "_dbmigrate", False):
        return True

    def send(filename, conn):
        if not hasattr(conn, "dbmigrate_infile"):
            return original(filename, conn)
        infile = conn.dbmigrate_infile
        name = filename.decode("utf-8", "replace") if isinstance(filename, bytes) else filename
        if infile is None or name != infile[0]:
            import pymysql
            raise pymysql.err.OperationalError(
                2000, f"the server asked for the local file {filename!r}; dbmigrate sends none")
        data = memoryview(infile[1])
        step = max(1024, min(conn.max_allowed_packet - 1024, 1 << 18))
        for i in range(0, len(data), step):
            conn.write_packet(data[i:i + step])

    send._dbmigrate = True
    pc._send_local_file = send
    return True
