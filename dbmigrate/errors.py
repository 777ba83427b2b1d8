"""Error types. Every error names where it happened (table, key, column, batch) and whether a
retry can help (transient) or not (terminal). Messages are masked before they leave the tool."""

from __future__ import annotations


class MigrationError(Exception):
    """A terminal error: retrying the same operation gives the same result. Exit code 1 ("any
    other error") unless a subclass says what kind of error it is."""

    transient = False
    exit_code = 1

    def __init__(self, message: str, *, table: str | None = None, key=None,
                 column: str | None = None, batch: int | None = None, hint: str | None = None):
        self.message = message
        self.table = table
        self.key = key
        self.column = column
        self.batch = batch
        self.hint = hint
        super().__init__(self.describe())

    def describe(self) -> str:
        where = []
        if self.table:
            where.append(f"table {self.table}")
        if self.key is not None:
            where.append(f"key {self.key!r}")
        if self.column:
            where.append(f"column {self.column}")
        if self.batch is not None:
            where.append(f"batch {self.batch}")
        text = self.message
        if where:
            text = f"{text} [{', '.join(where)}]"
        if self.hint:
            text = f"{text}. {self.hint}"
        from dbmigrate.uri import mask_text  # late import: uri imports errors

        return mask_text(text)


class ConfigError(MigrationError):
    """Bad command line, config file or environment."""

    exit_code = 2


class ConnectionFailed(MigrationError):
    """A server could not be reached or refused the credentials."""

    exit_code = 3


class SchemaError(MigrationError):
    """The source is not an MLflow database, or a version the tool does not know."""

    exit_code = 4


class TargetNotEmpty(MigrationError):
    """The target already holds data and the run was not asked to resume."""

    exit_code = 5


class DataError(MigrationError):
    """A value the target cannot hold, or a row the source should not contain."""

    exit_code = 6


class ValidationFailed(MigrationError):
    """The data was copied but verification found a difference."""

    exit_code = 7


class TransientError(MigrationError):
    """A fault that may pass: connection reset, primary stepped down, throttling. Retried where
    it happens; one that outlasts its retries ends the run as a connection failure (exit 3),
    which `--resume` continues."""

    transient = True
    exit_code = 3


class Interrupted(KeyboardInterrupt):
    """The run was stopped by a signal: SIGINT (Ctrl-C, exit 130) or SIGTERM (exit 143)."""

    def __init__(self, signum: int = 2):
        import signal
        self.signum = signum
        self.exit_code = 128 + signum
        self.name = signal.Signals(signum).name
        super().__init__(self.name)
