"""Trained models on disk: `minigrad.save` with metadata saying what was saved, and loading
that refuses a file that is not the model asked for.

An adder checkpoint's metadata holds `model = "adder"`, the preset's name and every
`AdderConfig` field as a string, so the model can be rebuilt from the file alone. Asking
for another preset than the one saved is refused before anything is loaded.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

import minigrad as mg
from minigrad.serialization import read_metadata

from .adder import Adder
from .counter import Counter
from .presets import PRESETS, AdderConfig

_CUSTOM = "custom"


def save_adder(model: Adder, path: str | os.PathLike, preset: str | None = None) -> None:
    """Write the adder's parameters and its config to `path` (.npz). `preset` names the
    preset it was built from (by default, the one whose config equals the model's)."""
    if preset is None:
        preset = next((name for name, (config, _) in PRESETS.items() if config == model.config),
                      _CUSTOM)
    metadata = {"model": "adder", "preset": preset}
    metadata.update({f.name: str(getattr(model.config, f.name))
                     for f in dataclasses.fields(AdderConfig)})
    _write(model, path, metadata)


def load_adder(path: str | os.PathLike, preset: str | None = None) -> tuple[Adder, str]:
    """The adder saved in `path`, and the name of its preset.

    With `preset`, a file saved with another preset is refused (ValueError naming both),
    before anything is loaded.
    """
    metadata = _metadata(path, "adder")
    saved = metadata.get("preset", _CUSTOM)
    if preset is not None and preset != saved:
        raise ValueError(f"{os.fspath(path)} holds a model of the {saved!r} preset, not "
                         f"{preset!r}; load it with --preset {saved} (or without --preset)")
    config = _config_from(metadata, path)
    model = Adder(config, rng=np.random.default_rng(0))
    mg.load(model, path)
    return model, saved


def save_counter(model: Counter, path: str | os.PathLike) -> None:
    """Write the counter's two parameters to `path` (.npz)."""
    _write(model, path, {"model": "counter"})


def load_counter(path: str | os.PathLike) -> Counter:
    """The counter saved in `path`."""
    _metadata(path, "counter")
    model = Counter()
    mg.load(model, path)
    return model


def _write(model: Any, path: str | os.PathLike, metadata: dict[str, str]) -> None:
    try:
        mg.save(model, path, metadata=metadata)
    except OSError as error:
        raise ValueError(f"cannot write {os.fspath(path)}: {error.strerror or error}") from None


def _metadata(path: str | os.PathLike, kind: str) -> dict[str, str]:
    try:
        metadata = read_metadata(path)
    except FileNotFoundError:
        raise ValueError(f"{os.fspath(path)}: no such file") from None
    except OSError as error:
        raise ValueError(f"cannot read {os.fspath(path)}: {error.strerror or error}") from None
    saved = metadata.get("model")
    if saved != kind:
        what = f"a {saved} model" if saved else "no model metadata"
        article = "an" if kind[0] in "aeiou" else "a"
        raise ValueError(f"{os.fspath(path)} holds {what}, not {article} {kind} (save one "
                         f"with `minigrad train {kind} --save PATH`)")
    return metadata


def _config_from(metadata: dict[str, str], path: str | os.PathLike) -> AdderConfig:
    values: dict[str, Any] = {}
    try:
        for f in dataclasses.fields(AdderConfig):
            text = metadata[f.name]
            if f.name in ("n_bits", "n_states"):
                values[f.name] = int(text)
            elif f.name == "max_operand":
                values[f.name] = None if text == "None" else int(text)
            elif f.name in ("bias", "learn_initial_state"):
                if text not in ("True", "False"):
                    raise ValueError(text)
                values[f.name] = text == "True"
            else:
                values[f.name] = text
        return AdderConfig(**values)
    except (KeyError, ValueError) as error:
        raise ValueError(f"{os.fspath(path)}: the saved adder config is unreadable "
                         f"({error})") from None
