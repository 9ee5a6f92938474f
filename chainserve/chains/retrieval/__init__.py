"""Documents in collections, embedded and searched: what the `rag` chain retrieves from."""
