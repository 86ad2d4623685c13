"""``python -m tools serve``: serve a dataset's experts over HTTP (hybrid endpoints) with uvicorn."""

from __future__ import annotations

import argparse

from tools import default_experts
from tools.serving import DEFAULT_MAX_REQUEST_BYTES, DEFAULT_MAX_WORKERS, DEFAULT_TIMEOUT_SECONDS, serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tools")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("serve", help="serve the default experts of a dataset")
    p.add_argument("--dataset", default="redial")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--max-request-bytes", type=int, default=DEFAULT_MAX_REQUEST_BYTES, help="larger request bodies get 413")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_SECONDS, help="seconds an expert call may take before 504")
    p.add_argument("--max-workers", type=int, default=DEFAULT_MAX_WORKERS, help="expert calls at once, timed-out ones included")
    args = parser.parse_args(argv)
    tools = default_experts(args.dataset)
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"serving {', '.join(t.name for t in tools)} at http://{host}:{args.port}/experts", flush=True)
    serve(tools, args.host, args.port, max_request_bytes=args.max_request_bytes, timeout_seconds=args.timeout, max_workers=args.max_workers)


if __name__ == "__main__":
    main()
