"""fetch_snapshot: one model repository into the Hugging Face cache (blocking).

Resumable the way huggingface_hub 1.33 is: a transfer that breaks mid-file is continued with a
ranged GET from what arrived (several times, while data keeps coming), and files already in the
cache are not fetched again when a download is started anew; a file cut by the process stopping
starts over. ``endpoint`` points it at a mirror (or ``$HF_ENDPOINT``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


class DownloadError(Exception):
    """The download failed; the message says why (repository or revision missing, network...)."""


def fetch_snapshot(
    repo_id: str,
    *,
    revision: str | None = None,
    endpoint: str | None = None,
    cache_dir: Path | None = None,
    tqdm_class: Any = None,
) -> Path:
    """Download (or complete) ``repo_id`` at ``revision``; returns its snapshot folder in the cache."""
    import httpx
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        folder = snapshot_download(
            repo_id,
            revision=revision,
            endpoint=endpoint,
            cache_dir=cache_dir,
            tqdm_class=tqdm_class,
        )
    except (HfHubHTTPError, LocalEntryNotFoundError, httpx.HTTPError, OSError, ValueError) as exc:
        raise DownloadError(f"{type(exc).__name__}: {exc}") from exc
    return Path(folder)
