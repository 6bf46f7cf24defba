"""Per-backend overhead: runs each backend's own benchmark (backend process vs the library in-process).

Each backend's bench measures ms per frame (or per EEG window) through the backend process
over WebSocket against the same code called directly in one process, in the same run:

    .venv/bin/python -m bench.backends [fatigue emotion eeg]

The fatigue bench runs in the fatigue venv (it imports mediapipe); the others orchestrate
their own venvs from the hub's.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from tests.support.processes import HUB_PYTHON, REPO

BENCHES = {
    "fatigue": (REPO / "model_backends" / "fatigue_backend" / ".venv" / "bin" / "python", "bench.backend_fatigue"),
    "emotion": (HUB_PYTHON, "bench.backend_emotion"),
    "eeg": (HUB_PYTHON, "bench.backend_eeg"),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=list(BENCHES), choices=list(BENCHES))
    args = parser.parse_args()
    failed = 0
    for name in args.names:
        python, module = BENCHES[name]
        print(f"\n== {name}: {python.relative_to(REPO)} -m {module}", flush=True)
        failed += subprocess.run([str(python), "-m", module], cwd=REPO, check=False).returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
