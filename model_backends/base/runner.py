"""The standard entry point: ``python main.py --host H --port P`` for any backend."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

from model_backends.base.base_backend import BaseModelBackend
from model_backends.base.tls import CERT_ENV, KEY_ENV, server_tls

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def build_parser(description: str = "Run a model backend") -> argparse.ArgumentParser:
    """The flags every backend understands; ``main.py`` may add its own before parsing."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default loopback)")
    parser.add_argument("--port", type=int, default=8766, help="TCP port to listen on")
    parser.add_argument("--model-path", default=os.environ.get("HUB_MODEL_PATH"), help="model folder or id")
    parser.add_argument("--device", default=os.environ.get("HUB_DEVICE"), help="cpu, cuda, or auto")
    parser.add_argument("--eager", action="store_true", help="load the model at start, not on first use")
    parser.add_argument("--max-concurrency", type=int, default=1, help="requests served at once")
    parser.add_argument("--log-level", default=os.environ.get("HUB_LOG_LEVEL", "INFO"))
    parser.add_argument("--tls-cert", default=os.environ.get(CERT_ENV), help="PEM certificate: serve wss://")
    parser.add_argument("--tls-key", default=os.environ.get(KEY_ENV), help="PEM private key of --tls-cert")
    return parser


def run_backend(
    backend_cls: type[BaseModelBackend],
    argv: Sequence[str] | None = None,
    *,
    parser: argparse.ArgumentParser | None = None,
    extra_kwargs: Callable[[argparse.Namespace], dict[str, Any]] | None = None,
) -> None:
    """Parse the standard flags, build the backend and serve until SIGTERM/SIGINT.

    A backend with flags of its own passes ``parser`` (from :func:`build_parser`, with its
    arguments added) and ``extra_kwargs``, which maps the parsed flags to constructor keywords
    (they override the standard ones).
    """
    args = (parser or build_parser(backend_cls.__doc__ or "Run a model backend")).parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format=LOG_FORMAT)
    kwargs: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "model_path": args.model_path,
        "device": None if args.device in (None, "", "auto") else args.device,
        "eager_load": args.eager,
        "max_concurrency": args.max_concurrency,
    }
    tls = server_tls(args.tls_cert, args.tls_key)
    if tls is not None:  # only then: a backend with its own constructor need not know the keyword
        kwargs["tls"] = tls
    if extra_kwargs is not None:
        kwargs.update(extra_kwargs(args))
    backend = backend_cls(**kwargs)
    try:
        backend.start()
    except KeyboardInterrupt:
        backend.stop()
    # cleanup() has run. A worker thread may still be inside a long inference that cannot be
    # interrupted; exiting now keeps a SIGTERM from waiting for it (and the hub from SIGKILLing).
    logging.shutdown()
    os._exit(0)
