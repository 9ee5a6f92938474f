"""Reference servers measured next to chainserve, each a `create_app()` factory for uvicorn.

Every baseline reads the mock upstream's URL from `OPENAI_BASE_URL`, exactly as chainserve does,
so the only difference between two rows of a result table is the server in the middle.
"""
