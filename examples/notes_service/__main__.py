"""``python -m examples.notes_service``: serve the example on 127.0.0.1."""

from __future__ import annotations

import argparse

import uvicorn

from dtpyfw.log import uvicorn_log_config
from examples.notes_service.app import build_app


def main() -> None:
    parser = argparse.ArgumentParser(description="the dtpyfw example service")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    app = build_app()
    print(f"notes service: http://{args.host}:{args.port}  (API docs at /docs)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_config=uvicorn_log_config())


if __name__ == "__main__":
    main()
