"""The vendor-neutral sandbox harness: an emulator's own event loop (`threaded`), loopback sockets
(`loopback`), fault knobs (`faults`) and an in-process WebSocket connector (`asgi_websocket`).

Each vendor's emulator lives in its own package (`app/backends/<vendor>/emulator/`) and uses only this
harness; `app.backends.registry.create_emulators` builds them for `FACADE_SANDBOX=true`.
"""
