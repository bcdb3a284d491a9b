"""`python -m app.backends.iometer.emulator --port N [--host 127.0.0.1] [--seed 7] [--page-size N]`: serve the
emulator with uvicorn and the real clock (benchmarks, soak tests, manual exploration)."""

from __future__ import annotations

import argparse

import uvicorn

from app.backends.iometer.emulator import create_emulator
from app.backends.iometer.emulator.app import BREAKS


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m app.backends.iometer.emulator", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--page-size", type=int, default=None)
    parser.add_argument(
        "--break", dest="breaks", action="append", default=[], choices=sorted(BREAKS), help="serve a variant"
    )
    args = parser.parse_args(argv)
    emulator = create_emulator(seed=args.seed, page_size=args.page_size, breaks=set(args.breaks))
    uvicorn.run(emulator.app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
