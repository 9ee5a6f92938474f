"""Conversation threads: where chat history lives, and how a chain reads and extends it."""

from chainserve.chains.history.store import ThreadHistory, ThreadInfo, ThreadStore
from chainserve.chains.history.wrap import THREAD_KEY, with_thread_history

__all__ = ["THREAD_KEY", "ThreadHistory", "ThreadInfo", "ThreadStore", "with_thread_history"]
