"""A run's life: preparing it from a request, starting, streaming, logging, ending it."""
