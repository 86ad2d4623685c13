"""``python -m tools serve``: serve a dataset's experts over HTTP (hybrid endpoints)."""

from __future__ import annotations

import argparse
import time

from tools import default_experts
from tools.remote import ExpertServer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tools")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("serve", help="serve the default experts of a dataset")
    p.add_argument("--dataset", default="redial")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    args = parser.parse_args(argv)
    with ExpertServer(default_experts(args.dataset), args.host, args.port) as server:
        print(f"serving {', '.join(server.tools)} at {server.url}/experts", flush=True)
        while True:
            time.sleep(3600)


if __name__ == "__main__":
    main()
