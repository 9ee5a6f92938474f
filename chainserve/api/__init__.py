"""The HTTP face of chainserve: the FastAPI app, its routes and protocol adapters."""
