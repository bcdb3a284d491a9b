"""`python -m app.backends.waltero.emulator --port N [--host 127.0.0.1]`: serve the emulator with the real clock."""

from __future__ import annotations

import argparse

import uvicorn

from app.backends.waltero.emulator.emulator import BREAKS, create_emulator


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m app.backends.waltero.emulator", description=__doc__)
    parser.add_argument("--port", type=int, default=8092)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--token-ttl", type=float, default=86400, help="token lifetime in seconds")
    parser.add_argument(
        "--break", dest="breaks", action="append", default=[], choices=sorted(BREAKS), help="serve a variant"
    )
    args = parser.parse_args(argv)
    emulator = create_emulator(seed=args.seed, token_ttl=args.token_ttl, breaks=set(args.breaks))
    uvicorn.run(emulator.app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
