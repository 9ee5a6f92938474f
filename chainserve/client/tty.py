"""Keeping the user's terminal intact: no control sequences from the server, no echo into a live
view, and the cursor restored when a signal ends the client."""

import re
import signal
import sys
import termios
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, TextIO

# C0 and C1 control characters and DEL, except newline and tab. A carriage return goes too: on a
# terminal it moves the cursor back, so later text could overwrite (and hide) earlier text; the
# terminal itself turns each newline into CR LF, so nothing is lost.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")

SHORT = 200
"""Characters of a server's message kept on an error line."""


def printable(text: str) -> str:
    """`text` without control characters: an ESC from a model cannot retitle or recolour
    the user's terminal."""
    return _CONTROL.sub("", text)


def for_stream(text: str, out: TextIO) -> str:
    """What to write to `out`: the text unchanged when piped, `printable` on a terminal."""
    return printable(text) if out.isatty() else text


def one_line(text: str, limit: int = SHORT) -> str:
    """`text` printable, its whitespace runs made single spaces, cut to `limit` characters."""
    line = " ".join(printable(text.replace("\r", " ")).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


@contextmanager
def no_echo(stream: TextIO | None = None) -> Iterator[None]:
    """Keys typed while this runs are not echoed (nor `^C` shown), when `stream` is a terminal.

    Rich pads each line of the live area to the full width, so an echoed `^C` wraps onto a new
    line and the last redraw lands one line too low, leaving a copy of the answer's top."""
    stream = stream or sys.stdin
    saved = _attributes(stream)
    if saved is None:
        yield
        return
    quiet = list(saved)
    quiet[3] &= ~(termios.ECHO | termios.ECHOCTL)
    termios.tcsetattr(stream.fileno(), termios.TCSANOW, quiet)
    try:
        yield
    finally:
        termios.tcsetattr(stream.fileno(), termios.TCSANOW, saved)


def _attributes(stream: TextIO | None) -> list[Any] | None:
    try:
        if stream is None or not stream.isatty():
            return None
        return list(termios.tcgetattr(stream.fileno()))
    except (OSError, ValueError, termios.error):  # closed, or not a real file
        return None


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    # Unwinds like Ctrl-C does, through the `finally`s that show the cursor and restore echo.
    raise SystemExit(128 + signum)


@contextmanager
def exit_cleanly_on_hangup() -> Iterator[None]:
    """SIGTERM and SIGHUP exit with 143 and 129 after the live view is cleaned up, instead of
    killing the process with the cursor hidden."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    caught = (signal.SIGTERM, signal.SIGHUP)
    previous = {signum: signal.signal(signum, _exit_on_signal) for signum in caught}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
