"""Streamed Markdown split into finished blocks and the tail that is still growing.

A block is finished once a blank line outside a code fence is followed by an unindented line:
no later text can change how it renders. The terminal prints finished blocks once and redraws
only the tail, so each redraw of a long answer stays short and fits on the screen; `recent`
gives the bottom of a tail that is itself too long (a long code block).
"""

FENCES = ("```", "~~~")


class MarkdownBlocks:
    """Feed it tokens; it hands back the text that has become whole blocks."""

    def __init__(self) -> None:
        self.tail = ""
        """The text not handed back yet: the block being written."""
        self._scanned = 0  # tail[:_scanned] is whole lines, already read
        self._fence: str | None = None  # the open fence's marker, e.g. "```"
        self._opener = ""  # and its line, e.g. "```python\n"
        self._opener_at = 0  # where that line starts in the tail
        self._after_blank = False

    def feed(self, text: str) -> str:
        """Add streamed text; return the blocks it finished, or "" (each token is read once)."""
        self.tail += text
        cut = 0
        while True:
            end = self.tail.find("\n", self._scanned)
            line = self.tail[self._scanned : None if end < 0 else end + 1]
            if self._starts_block(line):
                cut = self._scanned
                self._after_blank = False
            if end < 0:
                break
            self._read(line)
            self._scanned = end + 1
        finished, self.tail = self.tail[:cut], self.tail[cut:]
        self._scanned -= cut
        self._opener_at -= cut
        return finished

    def recent(self, lines: int) -> str:
        """The tail's last `lines` lines, behind its fence's opening line when they are code:
        enough to draw the bottom of a block taller than the screen."""
        if self.tail.count("\n") < lines:
            return self.tail
        recent = "\n".join(self.tail.rsplit("\n", lines)[1:])
        if self._fence is None or self._opener_at >= len(self.tail) - len(recent):
            return recent  # not code, or the opener is in the window already
        return self._opener + recent

    def _starts_block(self, line: str) -> bool:
        # Its first character is enough: an unindented line after a blank one, outside a
        # fence, can continue nothing above it (an indented one may continue a list item).
        return self._after_blank and self._fence is None and line[:1] not in ("", " ", "\t")

    def _read(self, line: str) -> None:
        stripped = line.strip()
        if self._fence is None:
            if stripped.startswith(FENCES):
                self._fence = stripped[: len(stripped) - len(stripped.lstrip(stripped[0]))]
                self._opener = line
                self._opener_at = self._scanned
        elif stripped.startswith(self._fence) and not stripped.strip(self._fence[0]):
            self._fence = None
        self._after_blank = not stripped
