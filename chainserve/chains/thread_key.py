"""The per-request key that names a conversation thread, shared by every kind of chain that
keeps one (chat memory, agents, a user's graph with its own checkpointer)."""

from langchain_core.runnables.utils import ConfigurableFieldSpec

THREAD_KEY = "thread_id"

THREAD_SPEC = ConfigurableFieldSpec(
    id=THREAD_KEY,
    annotation=str,
    name="Thread",
    description="Conversation thread to load and extend (see POST /threads).",
    default="",
    is_shared=True,
)
