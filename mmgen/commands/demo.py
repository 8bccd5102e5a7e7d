"""``mmgen demo RUN``."""
from __future__ import annotations

import sys

from mmgen.cli import add_threads_option


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "demo", description="Serve a local web page for the trained model of RUN: a caption box for "
                            "text-conditioned models, a class picker for class-conditional ones, an upload (or "
                            "caption) per modality for multimodal models with the other modalities generated, "
                            "shown and playable, and plain sampling for every model. Ctrl-C stops it.")
    p.add_argument("run_dir", help="a run folder written by `mmgen train` (with model/ or a checkpoint)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; another address lets "
                        "other machines send requests)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860; 0: a free one, printed)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    add_threads_option(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from mmgen import distributed
    from mmgen.demo import Demo
    from mmgen.demo.server import LOOPBACK, make_server
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be in [0, 65535] (0: a free one), got {args.port}")
    demo = Demo(args.run_dir, distributed.check_device(args.device, "--device"))
    server = make_server(demo, args.host, args.port)
    host, port = server.server_address[:2]
    if args.host not in LOOPBACK:
        print(f"mmgen demo: listening on {host}, not only this machine: anyone who reaches it can use the model",
              file=sys.stderr)
    shown = "127.0.0.1" if args.host in LOOPBACK else host
    print(f"mmgen demo: {demo.name} ({demo.mode}) of {args.run_dir} at http://{shown}:{port}/ (Ctrl-C stops it)",
          flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0
