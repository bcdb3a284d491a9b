"""Live readings: `GET /readings/live` as Server-Sent Events over shared upstream streams.

- `types`: what the hub needs from the rest of the service, as narrow callables and the `LiveSource`
  protocol (one per backend that can stream);
- `sse`: the wire encoding of events, pings and status lines;
- `hub`: one `Channel` per upstream stream (an IOmeter installation, a Waltero device) shared by every
  client watching it, with reconnects, catch-up, duplicate drop and the linger after the last client;
  one bounded `Subscriber` queue per client;
- `response`: the streaming ASGI response (replay, live events, pings, disconnect, overflow);
- `wiring`: builds the hub from the service and settings (the one place that knows the service);
- `asgi_websocket`: an in-process WebSocket client for ASGI apps (the sandbox's IOmeter emulator);
- `demo`: the sandbox-only `/live-demo` page.
"""
