"""Protection around each backend: cache, single flight, circuit breaker, deadline, provenance."""
