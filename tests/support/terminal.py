"""The `chainserve` client run as a user would: piped, or on a pseudo-terminal, and what a
terminal shows after rich's redraws (enough of xterm to see a duplicated line)."""

import fcntl
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from typing import IO

from tests.support.process import ROOT

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")
SHOW_CURSOR, HIDE_CURSOR = "\x1b[?25h", "\x1b[?25l"


def run_cli(
    *args: str, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chainserve", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        check=False,
    )


def _own_terminal() -> None:
    # A parent that ignores SIGINT (a background CI job) would pass that on to the child.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    # The pseudo-terminal becomes the child's controlling terminal, so a typed Ctrl-C (a 0x03
    # written to the master) reaches it as SIGINT, as it would from a real keyboard.
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class TerminalCli:
    """`python -m api ARGS` with stdin, stdout and stderr on a 100x30 pseudo-terminal."""

    def __init__(
        self, *args: str, env: dict[str, str] | None = None, stdout: IO[str] | None = None
    ) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
        unset = ("OPENAI_", "CHAINSERVE_", "NO_COLOR", "FORCE_COLOR", "TTY_", "COLUMNS", "LINES")
        clean = {k: v for k, v in os.environ.items() if not k.startswith(unset)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "chainserve", *args],
            stdin=slave,
            stdout=slave if stdout is None else stdout,
            stderr=slave,
            cwd=ROOT,
            env={**clean, "TERM": "xterm-256color", **(env or {})},
            start_new_session=True,
            preexec_fn=_own_terminal,
        )
        os.close(slave)
        self.master = master
        self.raw = ""

    @property
    def text(self) -> str:
        """What a reader sees, ignoring redraws: the output without escape sequences."""
        return ANSI.sub("", self.raw).replace("\r\n", "\n")

    def _read(self, deadline: float) -> bool:
        """Reads what is there; False once the child has closed the terminal."""
        ready, _, _ = select.select([self.master], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            raise AssertionError(f"the terminal stayed quiet; so far: {self.raw!r}")
        try:
            data = os.read(self.master, 65536)
        except OSError:  # EIO: every copy of the other end is closed
            data = b""
        self.raw += data.decode(errors="replace")
        return bool(data)

    def wait_for(self, visible: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while visible not in self.text:
            if not self._read(deadline):
                raise AssertionError(f"exited before showing {visible!r}: {self.raw!r}")

    def wait_for_match(self, pattern: str, timeout: float = 20) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while not (found := re.search(pattern, self.text)):
            if not self._read(deadline):
                raise AssertionError(f"exited before showing {pattern!r}: {self.raw!r}")
        return found

    def wait_until_reading_keys(self, timeout: float = 20) -> None:
        """Waits until the child sleeps in select/poll on the terminal. Python's readline only
        notices SIGINT when that wait is interrupted: a Ctrl-C that lands while it is still
        drawing the last echo is held until the next key, as it would be for a fast typist."""
        deadline = time.monotonic() + timeout
        pid = self.process.pid
        while time.monotonic() < deadline:
            try:
                with open(f"/proc/{pid}/wchan") as wchan, open(f"/proc/{pid}/stat") as stat:
                    waiting, state = wchan.read(), stat.read().rsplit(")", 1)[1].split()[0]
            except OSError:  # no /proc: give it time instead
                time.sleep(0.5)
                return
            if waiting in ("", "0"):  # the kernel hides where it waits
                time.sleep(0.5)
                return
            if state == "S" and ("poll" in waiting or "select" in waiting):
                return
            time.sleep(0.01)
        raise AssertionError(f"never waited for keys; so far: {self.raw!r}")

    def send(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def echoes(self) -> bool:
        """Whether the terminal echoes typed keys (the master reports the slave's modes)."""
        return bool(termios.tcgetattr(self.master)[3] & termios.ECHO)

    def finish(self, timeout: float = 20) -> int:
        deadline = time.monotonic() + timeout
        while self._read(deadline):
            pass
        return self.process.wait(timeout)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        os.close(self.master)


TerminalFactory = Callable[..., TerminalCli]
CONTROL = re.compile(
    r"\x1b\[([0-9;?]*)([A-Za-z])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|[\r\n]|[^\x1b\r\n]"
)


def screen(raw: str, width: int = 100) -> list[str]:
    """The rows a terminal `width` columns wide shows after `raw`: enough of xterm (cursor up,
    erase line, carriage return, wrapping at the margin) to see what rich's redraws leave."""
    rows: list[list[str]] = [[]]
    row = col = 0
    for match in CONTROL.finditer(raw):
        text, (params, command) = match.group(), match.groups()
        if command == "A":
            row, col = max(0, row - int(params or 1)), min(col, width - 1)
        elif command == "K" and params == "2":
            rows[row] = []
        elif text == "\r":
            col = 0
        elif text == "\n":
            row += 1
        elif command is None and not text.startswith("\x1b"):
            if col == width:  # the margin was reached: this character starts the next row
                row, col = row + 1, 0
            while len(rows) <= row:
                rows.append([])
            line = rows[row] + [" "] * (col + 1 - len(rows[row]))
            line[col] = text
            rows[row], col = line, col + 1
        while len(rows) <= row:
            rows.append([])
    return ["".join(line).rstrip() for line in rows]
