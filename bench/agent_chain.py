"""A user's own agent for the "chainserve (agent)" row: the LangGraph baseline's agent, as a
user's project file would hold it, served with `chainserve serve --chains bench/agent_chain.py`.

Built at import, as users write them; the bench sets OPENAI_BASE_URL before starting it.
"""

from bench.baselines.langgraph_app import build_agent

CHAINS = {"agent": build_agent()}
