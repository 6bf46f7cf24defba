"""``setup``'s one-time step for this backend: convert the default model's GGUF now, not on first use.

Run by ``python -m main_backend setup`` in this backend's venv (see ``main_backend/venvs.py``);
instant when the converted copy is already cached (``vlm_engine/gguf_cache.py``).
"""

from __future__ import annotations

import logging
import sys

from vlm_engine.gguf_cache import prepare

if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(prepare())
