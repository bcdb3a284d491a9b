"""Infrastructure, the lowest level: settings, errors, time, logs, metrics, request context and the instrumented
upstream transport. Imports nothing else of the app."""
