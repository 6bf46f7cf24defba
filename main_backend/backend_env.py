"""The environment a backend process gets: an allow-list of the hub's, never its secrets.

A backend (and the code of any bundle) runs with only what it needs to find its interpreter,
libraries, caches and devices, plus what its config entry sets (``env:``) or names
(``inherit_env:``). The hub's API keys, provider keys and any other variable that looks like a
credential stay in the hub.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping

#: Variables passed as they are.
ALLOWED_NAMES = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TMPDIR",
        "TEMP",
        "TMP",
        "LD_LIBRARY_PATH",
        "XDG_CACHE_HOME",
        "TORCH_HOME",
        "OMP_NUM_THREADS",
        "MKL_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "NUMEXPR_NUM_THREADS",
        "TOKENIZERS_PARALLELISM",
        "NO_COLOR",
    }
)
#: Variables passed when their name starts with one of these (and is not a credential).
ALLOWED_PREFIXES = ("LC_", "PYTHON", "CUDA_", "NVIDIA_", "HF_", "HUGGINGFACE_", "TRANSFORMERS_")
#: Never inherited, whatever the allow-list says: anything named like a credential.
SECRET_NAME = re.compile(r"TOKEN|KEY|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH", re.IGNORECASE)


def inherited(name: str, extra: Collection[str] = ()) -> bool:
    """Whether the hub's variable ``name`` is passed on to a backend."""
    if name in extra:
        return True
    if SECRET_NAME.search(name):
        return False
    return name in ALLOWED_NAMES or name.startswith(ALLOWED_PREFIXES)


def backend_environment(
    parent: Mapping[str, str],
    own: Mapping[str, str],
    *,
    inherit: Collection[str] = (),
    withheld: Collection[str] = (),
) -> dict[str, str]:
    """The full environment of one backend process.

    Args:
        parent: the hub's environment.
        own: the backend's ``env:`` from the config and what the hub sets (its token); these win.
        inherit: names from the backend's ``inherit_env:``, passed even if not allow-listed.
        withheld: names never passed from ``parent`` (the hub's key variables, providers' keys),
            even when ``inherit`` names them.
    """
    env = {k: v for k, v in parent.items() if k not in withheld and inherited(k, inherit)}
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.update(own)
    return env
