"""Run the real command line with stderr on a pseudo-terminal, and rebuild the screen a user
would see from the bytes written to it (the VT100 subset that tqdm and logging emit)."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
CSI = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])")


def screen(raw: bytes, width: int) -> list[str]:
    """The lines of the screen after `raw` was written to a terminal `width` columns wide (no
    scroll limit: every line ever reached is kept). The tty turns \\n into \\r\\n."""
    lines: list[list[str]] = [[]]
    row = col = 0
    text = raw.decode("utf-8", "replace")
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\x1b":
            m = CSI.match(text, i)
            if m:
                n = int(m.group(1)) if m.group(1).isdigit() else 1
                if m.group(2) == "A":
                    row = max(row - n, 0)
                elif m.group(2) == "B":
                    row += n
                elif m.group(2) == "K":
                    del lines[row][col:]
                i = m.end()
                continue
        if ch == "\r":
            col = 0
        elif ch == "\n":
            row, col = row + 1, 0
        elif ch >= " ":
            if col >= width:  # autowrap
                row, col = row + 1, 0
            while len(lines) <= row:
                lines.append([])
            line = lines[row]
            line.extend(" " * (col - len(line)))
            if col < len(line):
                line[col] = ch
            else:
                line.append(ch)
            col += 1
        while len(lines) <= row:
            lines.append([])
        i += 1
    return ["".join(x).rstrip() for x in lines]


def sigint_as_on_a_terminal() -> None:
    """In the child before exec: SIGINT delivered as at an interactive terminal. A test run
    started in the background by a non-interactive shell (as CI may be) inherits SIGINT ignored,
    and Python then installs no KeyboardInterrupt handler: Ctrl-C would do nothing."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class TerminalRun:
    """`python -m dbmigrate.cli ARGS` with stderr on a pty of `width` x 50 (stdout a pipe)."""

    def __init__(self, args, width: int = 250, env: dict | None = None):
        self.width = width
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, width, 0, 0))
        e = dict(os.environ)
        e.update({"PYTHONPATH": str(ROOT), "COLUMNS": str(width), **(env or {})})
        self.proc = subprocess.Popen([sys.executable, "-m", "dbmigrate.cli", *map(str, args)], cwd=ROOT,
                                     env=e, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave,
                                     preexec_fn=sigint_as_on_a_terminal)
        os.close(slave)
        self.master = master
        self.raw = bytearray()

    def read(self, timeout: float = 0.2) -> bytes:
        """What the terminal got within `timeout` seconds (also collected in self.raw)."""
        got = bytearray()
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                break
            r, _, _ = select.select([self.master], [], [], left)
            if not r:
                break
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # the other end closed: the process exited
                break
            if not chunk:
                break
            got += chunk
        self.raw += got
        return bytes(got)

    def wait_for(self, predicate, timeout: float = 300) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.read(0.3)
            if predicate(self):
                return True
            if self.proc.poll() is not None:
                self.read(0.5)
                return predicate(self)
        return False

    def finish(self, timeout: float = 600) -> tuple[int, str]:
        """Wait for the end; (exit code, stdout)."""
        end = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < end:
            self.read(0.5)
        out = self.proc.communicate(timeout=max(end - time.monotonic(), 1))[0].decode()
        self.read(0.3)
        os.close(self.master)
        return self.proc.returncode, out

    @property
    def screen(self) -> list[str]:
        return screen(bytes(self.raw), self.width)
