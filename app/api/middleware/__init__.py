"""Pure ASGI middleware, outermost first: `Observe` (request id, metrics, access log) →
`ClientAuth` (API keys) → `HitPath` (answers cached GETs before FastAPI routing)."""
