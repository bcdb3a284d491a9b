"""HTTP: routes, dependencies, the pure-ASGI front (middleware), problems, exports, OpenAPI, docs UI."""
