"""Trained models on disk: `minigrad.save` with metadata saying what was saved, and loading
that refuses a file that is not the model asked for.

An adder checkpoint's metadata holds `model = "adder"`, the preset's name, every
`AdderConfig` field and the parameters' `dtype` as strings, so the model can be rebuilt
from the file alone (a counter's: `model = "counter"` and its `dtype`). A file without a
`dtype` (written before it was saved) loads as float64, the models' default. Those
fields are checked against fixed bounds before any model is built (a file saying
`n_states = 99999999` costs nothing), then `minigrad.load` checks the arrays against the
model built. Every refusal is a one-line ValueError naming the file and what is wrong with
it; a file that cannot be read at all is one too ("no such file", "cannot read ...").
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

import minigrad as mg
from minigrad.serialization import read_metadata

from .adder import Adder
from .counter import Counter
from .presets import ACTIVATIONS, PRESETS, RECURRENT_INITS, AdderConfig

_CUSTOM = "custom"
_KINDS = ("adder", "counter")
# The dtypes a model is built in; a file without one was saved before it was recorded.
_DTYPES = ("float16", "float32", "float64")
_DEFAULT_DTYPE = "float64"
# Bounds on a saved adder's config, checked before the model is built. 62 bits: sums are
# encoded as int64. 1024 states: a recurrent weight of 8 MB; the presets use 3 to 32.
MAX_BITS = 62
MAX_STATES = 1024
_INTEGER = re.compile(r"[0-9]{1,20}")


def save_adder(model: Adder, path: str | os.PathLike, preset: str | None = None,
               seed: int | None = None) -> None:
    """Write the adder's parameters and its config to `path` (.npz). `preset` names the
    preset it was built from (by default, the one whose config equals the model's); `seed`
    the run's, which `eval` then measures on by default (`saved_seed`)."""
    if preset is None:
        preset = next((name for name, (config, _) in PRESETS.items() if config == model.config),
                      _CUSTOM)
    metadata = {"model": "adder", "preset": preset}
    metadata.update({f.name: str(getattr(model.config, f.name))
                     for f in dataclasses.fields(AdderConfig)})
    _write(model, path, metadata, seed)


def load_adder(path: str | os.PathLike, preset: str | None = None) -> tuple[Adder, str]:
    """The adder saved in `path`, and the name of its preset.

    With `preset`, a file saved with another preset is refused (ValueError naming both),
    before anything is loaded. The saved config must lie within n_bits <= 62 and
    n_states <= 1024, and a named preset's config must be that preset's.
    """
    metadata = _metadata(path, "adder")
    saved = metadata.get("preset", _CUSTOM)
    if saved != _CUSTOM and saved not in PRESETS:
        raise ValueError(f"{os.fspath(path)} names an unknown preset {_short(saved)}; "
                         f"known: {', '.join(PRESETS)}, {_CUSTOM}")
    if preset is not None and preset != saved:
        raise ValueError(f"{os.fspath(path)} holds a model of the {saved!r} preset, not "
                         f"{preset!r}; load it with --preset {saved} (or without --preset)")
    config = _config_from(metadata, path)
    if saved in PRESETS and PRESETS[saved][0] != config:
        raise ValueError(f"{os.fspath(path)} says preset {saved!r} but holds another config "
                         f"({_config_text(config)})")
    model = Adder(config, rng=np.random.default_rng(0), dtype=_dtype_from(metadata, path))
    _load(model, path, metadata)
    return model, saved


def save_counter(model: Counter, path: str | os.PathLike, seed: int | None = None) -> None:
    """Write the counter's two parameters and their dtype to `path` (.npz); `seed` as for
    `save_adder`."""
    _write(model, path, {"model": "counter"}, seed)


def saved_seed(path: str | os.PathLike, kind: str) -> int | None:
    """The seed of the run that saved the `kind` model in `path` (None in a file saved
    without one, or before seeds were saved)."""
    text = _metadata(path, kind).get("seed")
    if text is None:
        return None

    def refuse(problem: str) -> ValueError:
        return ValueError(f"{os.fspath(path)}: the saved run {problem}")

    return _bounded_int(text, 0, 2**63 - 1, "seed", refuse)


def load_counter(path: str | os.PathLike) -> Counter:
    """The counter saved in `path`, in the dtype it was saved in."""
    metadata = _metadata(path, "counter")
    model = Counter(dtype=_dtype_from(metadata, path))
    _load(model, path, metadata)
    return model


def _write(model: Any, path: str | os.PathLike, metadata: dict[str, str],
           seed: int | None = None) -> None:
    """Save `model` with `metadata`, the dtype of its parameters (all share one) and the
    run's seed, if given."""
    metadata = {**metadata, "dtype": str(next(iter(model.parameters())).dtype)}
    if seed is not None:
        metadata["seed"] = str(seed)
    try:
        mg.save(model, path, metadata=metadata)
    except OSError as error:
        raise ValueError(f"cannot write {os.fspath(path)}: {error.strerror or error}") from None
    except ValueError as error:
        raise ValueError(str(error).removeprefix("save: ")) from None


def _load(model: Any, path: str | os.PathLike, metadata: dict[str, str]) -> None:
    with _reading(path):
        loaded = mg.load(model, path)
    if loaded != metadata:  # another process replaced the file between the two reads
        raise ValueError(f"{os.fspath(path)} changed while it was being loaded; try again")


@contextmanager
def _reading(path: str | os.PathLike) -> Iterator[None]:
    """File errors in the user's words: no function names, no errno numbers."""
    try:
        yield
    except FileNotFoundError:
        raise ValueError(f"{os.fspath(path)}: no such file") from None
    except OSError as error:
        raise ValueError(f"cannot read {os.fspath(path)}: {error.strerror or error}") from None
    except ValueError as error:
        message = str(error)
        for function in ("load: ", "read_metadata: "):
            message = message.removeprefix(function)
        raise ValueError(message) from None


def _metadata(path: str | os.PathLike, kind: str) -> dict[str, str]:
    with _reading(path):
        metadata = read_metadata(path)
    saved = metadata.get("model")
    if saved != kind:
        what = (f"{_article(saved)} {saved} model" if saved in _KINDS else
                "a model of unknown kind" if saved else "no model metadata")
        raise ValueError(f"{os.fspath(path)} holds {what}, not {_article(kind)} {kind} (save one "
                         f"with `minigrad train {kind} --save PATH`)")
    return metadata


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _dtype_from(metadata: dict[str, str], path: str | os.PathLike) -> np.dtype:
    """The saved parameters' dtype (float64 for a file saved before it was recorded)."""
    name = metadata.get("dtype", _DEFAULT_DTYPE)
    if name not in _DTYPES:
        raise ValueError(f"{os.fspath(path)}: the saved model has dtype={_short(name)}, not "
                         f"one of {', '.join(_DTYPES)}")
    return np.dtype(name)


def _config_from(metadata: dict[str, str], path: str | os.PathLike) -> AdderConfig:
    """The saved config, every field parsed and bounded before anything is built."""
    def refuse(problem: str) -> ValueError:
        return ValueError(f"{os.fspath(path)}: the saved adder config {problem}")

    missing = [f.name for f in dataclasses.fields(AdderConfig) if f.name not in metadata]
    if missing:
        raise refuse(f"lacks {', '.join(missing)}")
    n_bits = _bounded_int(metadata["n_bits"], 1, MAX_BITS, "n_bits", refuse)
    n_states = _bounded_int(metadata["n_states"], 1, MAX_STATES, "n_states", refuse)
    max_operand = (None if metadata["max_operand"] == "None" else
                   _bounded_int(metadata["max_operand"], 1, 2 ** (n_bits - 1), "max_operand",
                                refuse))
    flags = {}
    for name in ("bias", "learn_initial_state"):
        if metadata[name] not in ("True", "False"):
            raise refuse(f"has {name}={_short(metadata[name])}, not True or False")
        flags[name] = metadata[name] == "True"
    for name, choices in (("activation", ACTIVATIONS), ("recurrent_init", RECURRENT_INITS)):
        if metadata[name] not in choices:
            raise refuse(f"has {name}={_short(metadata[name])}, not one of {', '.join(choices)}")
    return AdderConfig(n_bits=n_bits, n_states=n_states, max_operand=max_operand,
                       activation=metadata["activation"],  # type: ignore[arg-type]
                       recurrent_init=metadata["recurrent_init"],  # type: ignore[arg-type]
                       bias=flags["bias"], learn_initial_state=flags["learn_initial_state"])


def _bounded_int(text: str, low: int, high: int, name: str,
                 refuse: Callable[[str], ValueError]) -> int:
    # The pattern first: int() of a 100,000-digit string is slow, then refused by Python.
    if not _INTEGER.fullmatch(text) or not low <= int(text) <= high:
        raise refuse(f"has {name}={_short(text)}, not an integer in [{low}, {high}]")
    return int(text)


def _config_text(config: AdderConfig) -> str:
    return ", ".join(f"{f.name}={getattr(config, f.name)}" for f in dataclasses.fields(config))


def _short(text: str) -> str:
    """`text` quoted, cut to 40 characters: a hostile file's strings stay on one short line."""
    return repr(text if len(text) <= 40 else text[:37] + "...")
