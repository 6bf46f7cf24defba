"""A multi-stage Dockerfile for an unpacked bundle: wheels installed offline, slim non-root runtime."""

from __future__ import annotations

import re

from main_backend.packing.layout import (
    BACKEND_DIR,
    HEALTH_CHECK,
    LOCK_FILE,
    MODEL_DIR,
    NODEPS_LOCK_FILE,
    WHEELS_DIR,
)
from main_backend.packing.manifest import Manifest

APP = "/app"
MODELS = "/models"
VENV = "/opt/venv"
USER_ID = 10001


def dockerfile(manifest: Manifest, bundle_name: str | None = None) -> str:
    """The Dockerfile's text; its build context is the extracted bundle (``tar -xf FILE -C ctx``).

    ``bundle_name``: the bundle's file name, for the how-to-build comment (default NAME.bundle).
    """
    bundle_file = bundle_name or f"{manifest.backend.name}.bundle"
    python = manifest.target.python
    backend = manifest.backend
    folder = f"{BACKEND_DIR}/{backend.folder}"
    nodeps = ""
    if manifest.nodeps_packages:
        nodeps = (
            f" \\\n && {VENV}/bin/pip install --no-index --find-links /bundle/{WHEELS_DIR}"
            f" --no-deps -r /bundle/{NODEPS_LOCK_FILE}"
        )
    model_copy, model_flag = "", ""
    if manifest.model.path is not None:
        # Owned by root and not writable: the unprivileged user can read the weights, never change them.
        model_copy = f"COPY --chown=root:root --chmod=0555 {MODEL_DIR}/ {MODELS}/\n"
        model_flag = f" --model-path {MODELS}/{manifest.model.path.removeprefix(MODEL_DIR + '/')}"
    return f"""# syntax=docker/dockerfile:1.7
# {backend.name} {backend.version} from an offline bundle. Build context: the extracted bundle.
#   mkdir ctx && tar -xf {bundle_file} -C ctx && docker build -t {backend.name} ctx

# Builder: install the bundled wheels into a venv, with no index (nothing is downloaded).
FROM python:{python}-slim AS builder
ENV PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY {WHEELS_DIR}/ /bundle/{WHEELS_DIR}/
RUN python -m venv {VENV} \\
 && {VENV}/bin/pip install --no-index --find-links /bundle/{WHEELS_DIR} -r /bundle/{LOCK_FILE}{nodeps}

# Runtime: the venv, the backend's code and its model files, run as an unprivileged user.
FROM python:{python}-slim
RUN useradd --create-home --uid {USER_ID} --shell /usr/sbin/nologin backend
COPY --from=builder {VENV} {VENV}
COPY --chown=root:root {folder}/ {APP}/
COPY --chown=root:root {HEALTH_CHECK} {APP}/{HEALTH_CHECK}
{model_copy}ENV PATH={VENV}/bin:$PATH PORT={backend.port} PYTHONUNBUFFERED=1
WORKDIR {APP}
USER {USER_ID}
EXPOSE {backend.port}
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \\
  CMD ["python", "{APP}/{HEALTH_CHECK}"]
CMD ["sh", "-c", "exec python {backend.entry} --host 0.0.0.0 --port \\"$PORT\\"{model_flag}"]
"""


def copied_sources(text: str) -> list[str]:
    """The bundle paths a Dockerfile's ``COPY`` lines read from the build context (not ``--from``)."""
    sources = []
    for line in text.splitlines():
        words = line.split()
        if not words or words[0] != "COPY" or any(w.startswith("--from") for w in words):
            continue
        args = [w for w in words[1:] if not w.startswith("--")]
        sources += [re.sub(r"/+$", "", s) for s in args[:-1]]
    return sources
