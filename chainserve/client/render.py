"""How an answer shows in the terminal: Markdown rendered live on a TTY, the bare text piped.

Piped (or with `--plain` or NO_COLOR), stdout carries exactly the chain's output. On a terminal
a spinner waits for the first token, then rich renders the answer as Markdown while it grows.
All `rich` imports live here.
"""

import os
import stat
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from types import TracebackType
from typing import Any, Protocol, Self, TextIO

from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.live import Live
from rich.markdown import Markdown
from rich.segment import Segment
from rich.spinner import Spinner
from rich.text import Text

from chainserve.client.markdown_blocks import MarkdownBlocks
from chainserve.client.tty import exit_cleanly_on_hangup, for_stream, no_echo, one_line, printable

REFRESHES_PER_SECOND = 8
"""Redraws of the growing answer: each one re-renders its unfinished block, whatever the rate
of tokens, so a fast stream costs no more than a slow one."""


class AnswerView(Protocol):
    def write(self, text: str) -> None: ...


def styled_output(*, plain: bool, out: TextIO | None = None) -> bool:
    """Whether to render with rich: stdout is a terminal and nothing asked for plain text."""
    out = out or sys.stdout
    if plain or os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    return out.isatty()


class PlainAnswer:
    """The text as it comes; on a terminal without control characters."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.line_open = False
        """Whether text was written since the last newline."""

    def write(self, text: str) -> None:
        text = for_stream(text, self.out)
        if not text:
            return
        self.out.write(text)
        self.out.flush()
        self.line_open = not text.endswith("\n")


class _Bottom:
    """The last rows of a renderable that fit on the screen. A live area taller than the
    screen cannot be redrawn: rows scrolled off the top stay behind, once per redraw."""

    def __init__(self, renderable: RenderableType) -> None:
        self.renderable = renderable

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        lines = console.render_lines(self.renderable, options, pad=False)
        for line in lines[-max(1, options.size.height - 1) :]:
            yield from line
            yield Segment.line()


class LiveAnswer:
    """A spinner until the first token, then the answer as Markdown, redrawn at most
    REFRESHES_PER_SECOND times a second. Finished blocks are printed once above the live
    area, which keeps only the bottom of the block being written; the last redraw shows
    that block whole."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._blocks = MarkdownBlocks()
        self._started = False
        self._ended = False
        self._guards = ExitStack()  # echo off and signals handled while the view is live
        self._spinner = Spinner("dots", Text("waiting for the answer", style="dim"))
        self._live = Live(
            console=console,
            get_renderable=self._renderable,
            refresh_per_second=REFRESHES_PER_SECOND,
            # Never cropped: _Bottom keeps redraws within the screen, and the last one, which
            # may be taller (a long code block), must show the block whole.
            vertical_overflow="visible",
        )

    def _renderable(self) -> RenderableType:
        """Called by the refresh thread, so it only reads: the stream is never held up.
        While streaming, only the block's last screenful is parsed: a redraw's cost is
        bounded by the screen, not by the length of the answer."""
        if not self._started:
            return self._spinner
        if self._ended:
            return Markdown(self._blocks.tail)
        return _Bottom(Markdown(self._blocks.recent(self._console.size.height)))

    def __enter__(self) -> Self:
        with ExitStack() as guards:
            guards.enter_context(no_echo())
            guards.enter_context(exit_cleanly_on_hangup())
            self._live.start(refresh=True)  # draw the spinner now, not at the first tick
            self._guards = guards.pop_all()
        return self

    def write(self, text: str) -> None:
        text = printable(text)
        if not text:
            return
        first, self._started = not self._started, True
        finished = self._blocks.feed(text)
        if finished or first:
            self._live.refresh()  # the spinner goes at once; finished text leaves the area
        if finished:
            # Printed above the live area, with the blank line Markdown puts between blocks.
            self._console.print(Group(Markdown(finished), Text()))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # No answer yet (a failure, Ctrl-C): erase the spinner. Stopping shows the cursor again.
        self._live.transient = not self._started
        self._ended = True
        try:
            self._live.stop()
        finally:
            self._guards.close()


@contextmanager
def answer_view(*, styled: bool) -> Iterator[AnswerView]:
    """Where one answer's tokens go while it streams."""
    if styled:
        with LiveAnswer(Console()) as live:
            yield live
        return
    plain = PlainAnswer(sys.stdout)
    try:
        yield plain
    finally:
        if plain.line_open:
            end_line(sys.stdout)


def end_line(out: TextIO) -> None:
    """After an answer that did not end its line, start a new one for what follows (an error,
    stats, sources): on the terminal itself, or, when the answer went down a pipe (`| tee`)
    to what is likely the same screen, on stderr. Piped, stdout stays exactly the chain's."""
    if out.isatty():
        out.write("\n")
        out.flush()
    elif _is_pipe(out) and sys.stderr.isatty():
        sys.stderr.write("\n")


def _is_pipe(out: TextIO) -> bool:
    try:
        return stat.S_ISFIFO(os.fstat(out.fileno()).st_mode)
    except (OSError, ValueError):
        return False


def source_label(source: dict[str, Any]) -> str:
    """`[1] Title, p. 3`: a retrieved chunk's number, its document's title (or id), its page."""
    title = source.get("title") or source.get("doc_id") or "untitled"
    page = source.get("page")
    label = f"[{source.get('number', '?')}] {title}" + (f", p. {page}" if page is not None else "")
    return one_line(label)


def print_sources(sources: list[dict[str, Any]], *, styled: bool) -> None:
    """The documents a retrieval chain used, on stderr: stdout keeps only the answer."""
    if not styled:
        print("Sources:", *(source_label(s) for s in sources), sep="\n  ", file=sys.stderr)
        return
    console = Console(stderr=True, highlight=False)
    console.print(Text("Sources", style="bold"))
    for source in sources:
        number, _, rest = source_label(source).partition(" ")
        console.print(Text.assemble("  ", (number, "cyan"), " ", rest))
