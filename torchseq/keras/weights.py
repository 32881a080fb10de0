"""Load Keras 3 weights into torchseq.keras layers, exactly.

The pattern of nanoGPT's ``from_pretrained``: read the foreign variables, walk our layers, and copy
key by key, asserting every shape first and transposing the variables named in :data:`TRANSPOSED`.
The layouts differ in three ways:

- Keras kernels are (inputs, outputs), torch weights (outputs, inputs): kernels are transposed;
- the GRU stacks its gates z, r, h in Keras and r, z, n in torch: the first two blocks swap (the LSTM's
  i, f, c, o is torch's i, f, g, o already);
- a GRU with ``reset_after=True`` has a (2, 3H) bias in Keras: row 0 is torch's ``bias_ih``, row 1
  ``bias_hh``. Every other Keras recurrent layer has one bias, torchseq's ``recurrent_bias=False``.

Sources: a Keras 3 model object, a ``.keras`` archive, or a ``.weights.h5`` file (files need h5py,
not Keras). Keras layers pair with our layers class by class, in order: the k-th Keras LSTM with
weights fills the k-th torchseq.keras ``LSTM`` of the module (``named_modules`` order).
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from torchseq.keras.layers import GRU, Dense, KerasLayer, KerasRecurrent

#: Keras variables stored (inputs, outputs) that torch stores (outputs, inputs).
TRANSPOSED = ("kernel", "recurrent_kernel")

#: Keras' file names of layers (snake case of the class) → class, for ``.weights.h5`` files.
CLASS_OF_FILE_NAME = {
    "dense": "Dense",
    "simple_rnn": "SimpleRNN",
    "lstm": "LSTM",
    "gru": "GRU",
    "bidirectional": "Bidirectional",
}


@dataclass(frozen=True)
class KerasLayerWeights:
    """The variables of one Keras layer, in Keras' order (a Bidirectional's forward half first)."""

    name: str                          # the layer's name, or its group in a file
    keras_class: str                   # "Dense", "LSTM", "Bidirectional", …
    variables: tuple[np.ndarray, ...]
    wrapped_class: str | None = None   # for a Bidirectional: the class of its layer, when known


@dataclass(frozen=True)
class Conversion:
    """How one Keras variable becomes one or more entries of a torchseq layer's ``state_dict``."""

    keras_name: str
    torch_keys: tuple[str, ...]        # two keys: the variable stacks them as rows (GRU reset_after bias)
    swap_gates: bool = False           # GRU: Keras z, r, h → torch r, z, n

    @property
    def transpose(self) -> bool:
        return self.keras_name.rsplit("/", 1)[-1] in TRANSPOSED

    def keras_shape(self, torch_shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
        shape = torch_shapes[0][::-1] if self.transpose else torch_shapes[0]
        return (len(torch_shapes), *shape) if len(torch_shapes) > 1 else shape

    def to_torch(self, value: Tensor) -> list[Tensor]:
        parts = list(value) if len(self.torch_keys) > 1 else [value]
        parts = [part.T if self.transpose else part for part in parts]
        return [swap_first_two_gates(part) for part in parts] if self.swap_gates else parts


def swap_first_two_gates(stacked: Tensor) -> Tensor:
    """(3H, ·) or (3H,) with gate blocks [a, b, c] along dim 0 → [b, a, c]; its own inverse."""
    first, second, third = stacked.chunk(3, dim=0)
    return torch.cat([second, first, third], dim=0)


# -- what each of our layers expects -------------------------------------------------------------------
def conversions(layer: KerasLayer) -> list[Conversion]:
    """The Keras variables ``layer`` takes, in Keras' order."""
    if isinstance(layer, Dense):
        bias = [Conversion("bias", ("bias",))] if layer.bias is not None else []
        return [Conversion("kernel", ("weight",)), *bias]
    if isinstance(layer, KerasRecurrent):
        return [conversion for direction in range(layer.directions)
                for conversion in recurrent_conversions(layer, direction)]
    raise TypeError(f"layer: no Keras weight layout known for {type(layer).__name__}")


def recurrent_conversions(layer: KerasRecurrent, direction: int) -> list[Conversion]:
    """kernel, recurrent_kernel and (if any) bias of one direction, into the core's torch.nn keys."""
    suffix = "_reverse" if direction else ""
    prefix = ("forward/", "backward/")[direction] if layer.directions == 2 else ""
    is_gru = isinstance(layer, GRU) or getattr(layer, "layer_class", None) is GRU
    result = [
        Conversion(f"{prefix}kernel", (f"core.weight_ih_l0{suffix}",), swap_gates=is_gru),
        Conversion(f"{prefix}recurrent_kernel", (f"core.weight_hh_l0{suffix}",), swap_gates=is_gru),
    ]
    if layer.core.bias:
        biases = ("bias_ih", "bias_hh") if layer.core.recurrent_bias else ("bias_ih",)
        keys = tuple(f"core.{bias}_l0{suffix}" for bias in biases)
        result.append(Conversion(f"{prefix}bias", keys, swap_gates=is_gru))
    return result


# -- loading -------------------------------------------------------------------------------------------
def load_keras_weights(module: nn.Module, source: Any) -> list[tuple[str, str]]:
    """Copy the weights of a Keras model or layer (object, ``.keras`` or ``.weights.h5``) into ``module``.

    Returns the pairs (Keras layer, torchseq layer) that were filled. Raises ``ValueError`` naming the
    layers and the expected and given shapes when the two models do not match.
    """
    keras_layers = read_keras_weights(source)
    targets = [(name or type(layer).__name__, layer) for name, layer in module.named_modules()
               if isinstance(layer, KerasLayer)]
    wanted = Counter(layer.keras_class for _, layer in targets)
    given = Counter(layer.keras_class for layer in keras_layers)
    if wanted != given:
        raise ValueError(
            f"source: expected Keras layers with weights {dict(sorted(wanted.items()))} to match the "
            f"torchseq module, got {dict(sorted(given.items()))}"
        )
    queues: dict[str, list[KerasLayerWeights]] = defaultdict(list)
    for keras_layer in keras_layers:
        queues[keras_layer.keras_class].append(keras_layer)
    pairs = []
    for name, target in targets:
        keras_layer = queues[target.keras_class].pop(0)
        copy_layer(keras_layer, target, name)
        pairs.append((keras_layer.name, name))
    return pairs


@torch.no_grad()
def copy_layer(source: KerasLayerWeights, target: KerasLayer, target_name: str) -> None:
    """Copy one Keras layer's variables into ``target``, checking each shape before any copy."""
    where = f"Keras layer {source.name!r} ({source.keras_class}) → torchseq {target_name!r}"
    wrapped = getattr(target, "layer_class", None)
    if source.wrapped_class and wrapped and source.wrapped_class != wrapped.keras_class:
        raise ValueError(f"{where}: expected Bidirectional({wrapped.keras_class}), got "
                         f"Bidirectional({source.wrapped_class})")
    expected = conversions(target)
    if len(source.variables) != len(expected):
        raise ValueError(
            f"{where}: expected {len(expected)} variables ({', '.join(c.keras_name for c in expected)}), "
            f"got {len(source.variables)}"
        )
    own = target.state_dict()
    converted: dict[str, Tensor] = {}
    for conversion, value in zip(expected, source.variables, strict=True):
        torch_shapes = [tuple(own[key].shape) for key in conversion.torch_keys]
        keras_shape = conversion.keras_shape(torch_shapes)
        if tuple(value.shape) != keras_shape:
            pairs = zip(conversion.torch_keys, torch_shapes, strict=True)
            ours = ", ".join(f"{key} {shape}" for key, shape in pairs)
            raise ValueError(
                f"{where}: {conversion.keras_name}: expected shape {keras_shape} (Keras' layout of {ours}), "
                f"got {tuple(value.shape)}"
            )
        values = conversion.to_torch(torch.as_tensor(np.asarray(value)))
        converted.update(zip(conversion.torch_keys, values, strict=True))
    target.load_state_dict(converted)  # strict: every parameter of the layer comes from Keras


# -- reading Keras weights -----------------------------------------------------------------------------
def read_keras_weights(source: Any) -> list[KerasLayerWeights]:
    """The layers with weights of a Keras model or layer, a ``.keras`` archive or a ``.weights.h5`` file."""
    if isinstance(source, str | PathLike):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"source: no such file {str(path)!r}")
        if path.name.endswith(".keras"):
            return read_keras_archive(path)
        if path.name.endswith(".h5"):
            with import_h5py().File(path, "r") as file:
                return read_weights_file(file, str(path))
        raise ValueError(f"source: expected a '.keras' or '.weights.h5' file, got {str(path)!r}")
    if hasattr(source, "get_weights"):
        return list(read_layers(getattr(source, "layers", [source])))
    raise TypeError(f"source: expected a Keras model or layer, or a path to a .keras/.weights.h5 file, "
                    f"got {type(source).__name__}")


def read_layers(layers: list[Any]) -> Iterator[KerasLayerWeights]:
    """Keras layer objects with weights, nested models flattened, in order."""
    for layer in layers:
        keras_class = type(layer).__name__
        if hasattr(layer, "layers"):                               # a nested model
            yield from read_layers(layer.layers)
        elif hasattr(layer, "forward_layer"):                      # Bidirectional
            variables = (*layer.forward_layer.get_weights(), *layer.backward_layer.get_weights())
            yield KerasLayerWeights(layer.name, keras_class, variables, type(layer.forward_layer).__name__)
        elif layer.get_weights():
            yield KerasLayerWeights(layer.name, keras_class, tuple(layer.get_weights()))


def import_h5py() -> Any:
    try:
        import h5py
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("loading Keras weights from a file needs h5py: pip install h5py "
                          "(or pip install 'torchseq[keras]')") from error
    return h5py


def read_keras_archive(path: Path) -> list[KerasLayerWeights]:
    """A ``.keras`` archive: its config.json gives the layer order, its model.weights.h5 the values."""
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        if not {"config.json", "model.weights.h5"} <= names:
            raise ValueError(f"source: {str(path)!r} is not a Keras 3 archive (expected config.json and "
                             f"model.weights.h5 inside, found {sorted(names)})")
        config = json.loads(archive.read("config.json"))
        weights = io.BytesIO(archive.read("model.weights.h5"))
    with import_h5py().File(weights, "r") as file:
        return list(read_configured_layers(config, file, f"{path.name}:"))


def read_configured_layers(model_config: dict, group: Any, where: str) -> Iterator[KerasLayerWeights]:
    """Walk a model's config in order, reading each layer's group (named by class, found by name)."""
    layer_configs = model_config.get("config", {}).get("layers")
    if layer_configs is None:
        raise ValueError(f"source: {where} {model_config.get('class_name')!r} lists no layers in its config "
                         f"(a subclassed model); load from the model object instead")
    groups = {stored_name(group["layers"][key]): group["layers"][key] for key in group.get("layers", {})}
    for layer_config in layer_configs:
        name, keras_class = layer_config["config"]["name"], layer_config["class_name"]
        if name not in groups:
            continue                                                 # InputLayer and layers with no state
        layer_group = groups[name]
        if "layers" in layer_config["config"]:                       # a nested model
            yield from read_configured_layers(layer_config, layer_group, f"{where}{name}/")
            continue
        variables = group_variables(layer_group)
        if variables:
            wrapped = layer_config["config"].get("layer", {}).get("class_name")
            yield KerasLayerWeights(f"{where}{name}", keras_class, variables, wrapped)


def read_weights_file(file: Any, where: str) -> list[KerasLayerWeights]:
    """A bare ``.weights.h5`` file: classes come from group names (``lstm_2`` is the third LSTM).

    The file keeps the order of layers within a class but not across classes, which is all the
    class-by-class pairing needs; it does not keep the order across nested models, so those are refused.
    """
    if "layers" not in file:
        raise ValueError(f"source: {where!r} is not a Keras 3 weights file (no 'layers' group; Keras 2 "
                         f"HDF5 files are not supported)")
    layers = []
    for key in file["layers"]:
        layer_group = file["layers"][key]
        if "layers" in layer_group:
            raise ValueError(f"source: {where!r} holds a nested model ({key!r}) whose layer order a "
                             f"weights file does not record; load the .keras file or the model object")
        variables = group_variables(layer_group)
        if variables:
            base, index = re.fullmatch(r"(.*?)(?:_(\d+))?", key).groups()
            layers.append((CLASS_OF_FILE_NAME.get(base, base), int(index or 0), key, variables))
    return [KerasLayerWeights(f"{where}:layers/{key}", keras_class, variables)
            for keras_class, _, key, variables in sorted(layers, key=lambda layer: layer[:2])]


def stored_name(layer_group: Any) -> str | None:
    """The layer name Keras records in a group's ``vars`` attributes."""
    return layer_group["vars"].attrs.get("name") if "vars" in layer_group else None


def group_variables(layer_group: Any) -> tuple[np.ndarray, ...]:
    """A layer group's variables in Keras' order: its own ``vars/0, 1, …``, then its sublayers'."""
    if "forward_layer" in layer_group:                               # Bidirectional: forward half first
        return group_variables(layer_group["forward_layer"]) + group_variables(layer_group["backward_layer"])
    own = layer_group.get("vars", {})
    variables = tuple(np.asarray(own[key]) for key in sorted(own, key=int))
    for key in sorted(layer_group):
        if key != "vars":
            variables += group_variables(layer_group[key])
    return variables
