"""Output shapes the tests serve: a structured-output schema; tools come from the shipped
`agent` example (`chainserve.chains.agent.calculator`), which really computes."""

from pydantic import BaseModel


class Verdict(BaseModel):
    """A structured answer: the offline model fills `reason` with the question's words."""

    guilty: bool
    reason: str
