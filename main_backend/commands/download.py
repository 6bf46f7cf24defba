"""``download REPO_ID [--revision R] [--endpoint URL]``: fetch a model into the Hugging Face cache.

Runs here, not through the hub: a transfer that breaks is continued with ranged requests, and a
second run fetches only the files the cache lacks; with a progress bar on stderr, from the Hub
or a mirror (``--endpoint``, else ``hub.hf_endpoint`` of the config, else ``$HF_ENDPOINT``). The
cache is ``hub.hf_cache_dir`` of the config, else huggingface_hub's own (``$HF_HUB_CACHE``); the
VLM backend finds the model there by its repo id.
"""

from __future__ import annotations

import argparse
import sys

from tqdm import tqdm

from main_backend.config import load_config
from main_backend.downloads.fetch import DownloadError, fetch_snapshot


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "download", help="fetch a Hugging Face model into the local cache (resumable, mirrors)", parents=[common]
    )
    parser.add_argument("repo_id", help="owner/name, e.g. HuggingFaceTB/SmolVLM-256M-Instruct")
    parser.add_argument("--revision", default=None, help="branch, tag or commit (default: main)")
    parser.add_argument("--endpoint", default=None, help="a mirror's URL, e.g. https://hf-mirror.com")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    endpoint = args.endpoint or config.hub.hf_endpoint
    print(f"downloading {args.repo_id}@{args.revision or 'main'} from {endpoint or 'the Hugging Face Hub'}")
    try:
        # A plain tqdm always draws its bar (huggingface_hub's own hides it when stderr is not a terminal).
        folder = fetch_snapshot(
            args.repo_id,
            revision=args.revision,
            endpoint=endpoint,
            cache_dir=config.hub.hf_cache_path,
            tqdm_class=tqdm,
        )
    except DownloadError as exc:
        print(f"error: {exc}\n(run the same command again: files already fetched are kept)", file=sys.stderr)
        return 1
    print(f"done: {folder}")
    print(f"use it as model_path: {args.repo_id}" + (f"@{args.revision}" if args.revision else ""))
    return 0
