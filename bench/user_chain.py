"""A user's own chain for the "chainserve (your chain)" row: LangServe's baseline chain, as a
user's project file would hold it, served with `chainserve serve --chains bench/user_chain.py`.

Built at import, as users write them; the bench sets OPENAI_BASE_URL before starting it.
"""

from bench.baselines.langserve_app import build_chain

CHAINS = {"mine": build_chain()}
