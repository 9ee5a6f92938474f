"""A structured output as JSON text that only grows, for surfaces that carry text alone."""

from typing import Any

from chainserve.api.runs.encoding import to_json


class ObjectText:
    """Turns a run's `object` snapshots into pieces of one JSON text.

    A snapshot's text up to its still-open end (closing quotes and brackets) only ever grows,
    so that part goes out at once and the closing characters with the complete object. A
    `RunnableParallel`'s merged value, whose keys grow in any order, goes out whole at the end.
    """

    def __init__(self) -> None:
        self.sent = ""
        """The JSON text handed out so far."""

    def delta(self, body: dict[str, Any]) -> str | None:
        """The text one `object` event adds ("" for none yet); None when the complete value's
        text does not continue what was sent, which a surface must report, not paper over."""
        complete = bool(body.get("complete"))
        if body.get("merged") and not complete:
            return ""
        text = to_json(body["value"])
        if not complete:
            text = text.rstrip('"}]')
        if not text.startswith(self.sent):
            # Never seen (a snapshot's JSON only grows), but never a silently wrong answer.
            return None if complete else ""
        delta, self.sent = text[len(self.sent) :], text
        return delta


UNSTREAMABLE = "the structured output changed shape while streaming; GET /runs/{id} has it"
