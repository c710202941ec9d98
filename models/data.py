"""Data sets of the write-ups: counting ones, and adding binary numbers.

Binary numbers are stored least significant bit first: bit ``k`` of a value ``v`` is
``(v >> k) & 1`` and sits at position ``k``. An RNN reading the positions in order then sees
the bits in the order in which a carry travels.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

import minigrad as mg

__all__ = [
    "addition_data",
    "as_dtype",
    "bits_to_int",
    "counting_data",
    "encode_sum",
    "format_sample",
    "int_to_bits",
    "MAX_BITS",
]

# int64 holds values below 2**63; one bit is kept free so that a sum of two operands that
# fit in n_bits can still be checked without overflow.
MAX_BITS = 62


def counting_data(
    rng: np.random.Generator, n_sequences: int = 20, length: int = 10
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Sequences of 0/1 and the number of ones in each (the counter's data: part 1
    of "How to implement an RNN" trains on 20 sequences of 10).

    ``X[i, k] = round(u)`` with ``u ~ U[0, 1)``, and ``t[i] = sum_k X[i, k]``.

    Returns ``X`` of shape ``(n_sequences, length)`` and ``t`` of shape ``(n_sequences,)``,
    both float64.
    """
    _check_positive("counting_data", n_sequences=n_sequences, length=length)
    X = np.round(rng.uniform(0.0, 1.0, size=(n_sequences, length)))
    return X, X.sum(axis=1)


def int_to_bits(values: ArrayLike, n_bits: int) -> NDArray[np.float64]:
    """The binary digits of non-negative integers, least significant first.

    ``bits[..., k] = (values >> k) & 1`` for ``k = 0 .. n_bits - 1``; the result has shape
    ``values.shape + (n_bits,)`` and dtype float64. Raises ValueError if a value is negative
    or is not below ``2 ** n_bits``.
    """
    _check_n_bits("int_to_bits", n_bits)
    v = _as_integers("int_to_bits", values)
    if v.size:
        low, high = v.min(), v.max()
        if low < 0:
            raise ValueError(f"int_to_bits: value {low} is negative")
        if high >= 2**n_bits:
            raise ValueError(f"int_to_bits: value {high} does not fit in {n_bits} bits")
    shifts = np.arange(n_bits, dtype=np.int64)
    return ((v[..., None] >> shifts) & 1).astype(np.float64)


def bits_to_int(bits: ArrayLike) -> NDArray[np.int64]:
    """The integers whose bits (least significant first) run along the last axis.

    ``value = sum_k [bits[..., k] > 0.5] * 2**k``: bits may be probabilities, and a bit
    counts as 1 when it is above one half. Returns int64 of shape ``bits.shape[:-1]``.
    """
    b = np.asarray(bits)
    if b.ndim == 0:
        raise ValueError("bits_to_int: bits need at least one axis (the bit axis)")
    _check_n_bits("bits_to_int", b.shape[-1])
    weights = np.left_shift(np.int64(1), np.arange(b.shape[-1], dtype=np.int64))
    return np.asarray((b > 0.5).astype(np.int64) @ weights)


def encode_sum(
    a: ArrayLike, b: ArrayLike, n_bits: int
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Samples for given operands: ``X[i, k] = (bit k of a_i, bit k of b_i)``, ``T[i, k, 0]``
    = bit k of ``a_i + b_i``.

    ``a`` and ``b`` are integers or 1-D integer arrays (broadcast together; a scalar pair
    makes one sample). Returns ``X`` of shape ``(n, n_bits, 2)`` and ``T`` of shape
    ``(n, n_bits, 1)``, float64. Raises ValueError if an operand is negative or a sum does
    not fit in ``n_bits`` bits.
    """
    _check_n_bits("encode_sum", n_bits)
    a_, b_ = np.broadcast_arrays(
        np.atleast_1d(_as_integers("encode_sum", a)),
        np.atleast_1d(_as_integers("encode_sum", b)),
    )
    if a_.ndim != 1:
        raise ValueError(f"encode_sum: operands must be scalars or 1-D, got shape {a_.shape}")
    for operand in (a_, b_):
        if operand.size and operand.min() < 0:
            raise ValueError(f"encode_sum: operand {operand.min()} is negative")
    total = a_ + b_
    too_big = total >= 2**n_bits
    if too_big.any():
        i = int(np.argmax(too_big))
        raise ValueError(
            f"encode_sum: {a_[i]} + {b_[i]} = {total[i]} does not fit in {n_bits} bits"
        )
    X = np.stack([int_to_bits(a_, n_bits), int_to_bits(b_, n_bits)], axis=-1)
    T = int_to_bits(total, n_bits)[..., None]
    return X, T


def addition_data(
    rng: np.random.Generator,
    n_samples: int,
    n_bits: int,
    max_operand: int | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Random sums ``a + b`` with ``a, b`` uniform integers in ``[0, max_operand)``
    (part 2 of "How to implement an RNN" adds 6-bit numbers in 7 bits).

    ``max_operand`` defaults to ``2 ** (n_bits - 1)``, so that every sum fits in ``n_bits``
    bits; a larger one is refused if ``2 * (max_operand - 1)`` does not fit. Draws ``a`` then
    ``b`` with ``rng.integers``. Returns ``X`` (n_samples, n_bits, 2) and ``T``
    (n_samples, n_bits, 1), float64, least significant bit first (see `encode_sum`).
    """
    _check_positive("addition_data", n_samples=n_samples)
    _check_n_bits("addition_data", n_bits)
    if max_operand is None:
        max_operand = 2 ** (n_bits - 1)
    if not isinstance(max_operand, (int, np.integer)) or max_operand < 1:
        raise ValueError(
            f"addition_data: max_operand must be an integer >= 1, got {max_operand!r}"
        )
    if 2 * (max_operand - 1) >= 2**n_bits:
        raise ValueError(
            f"addition_data: max_operand={max_operand} allows the sum "
            f"{2 * (max_operand - 1)}, which does not fit in {n_bits} bits"
        )
    a = rng.integers(0, max_operand, size=n_samples, dtype=np.int64)
    b = rng.integers(0, max_operand, size=n_samples, dtype=np.int64)
    return encode_sum(a, b, n_bits)


def format_sample(
    x: ArrayLike, target: ArrayLike, prediction: ArrayLike | None = None
) -> str:
    """One sum in the write-ups' layout: bits least significant first, as stored, and the
    integer values in a right-aligned column.

    ``x`` is ``(n_bits, 2)``, ``target`` and ``prediction`` are ``(n_bits, 1)`` or
    ``(n_bits,)``; a prediction may hold probabilities (a bit is 1 above one half). For
    37 + 43 = 80 in 7 bits, with a prediction::

        x1:   1010010   37
        x2: + 1101010   43
              -------
        t:  = 0000101   80
        y:    0000101   80

    Each line is a 4-character label, a sign and a space, the bits, three spaces and the
    value; the separator line has no trailing spaces.
    """
    x_ = np.asarray(x)
    if x_.ndim != 2 or x_.shape[1] != 2:
        raise ValueError(f"format_sample: x must have shape (n_bits, 2), got {x_.shape}")
    n_bits = x_.shape[0]
    rows = [
        ("x1:", " ", x_[:, 0]),
        ("x2:", "+", x_[:, 1]),
        ("t:", "=", _bit_column(target, n_bits, "target")),
    ]
    if prediction is not None:
        rows.append(("y:", " ", _bit_column(prediction, n_bits, "prediction")))
    values = [str(int(bits_to_int(bits))) for _, _, bits in rows]
    width = max(len(v) for v in values)
    lines = [
        f"{label:<4}{sign} {_bit_string(bits)}   {value:>{width}}"
        for (label, sign, bits), value in zip(rows, values)
    ]
    lines.insert(2, " " * 6 + "-" * n_bits)
    return "\n".join(lines)


def _bit_column(bits: ArrayLike, n_bits: int, name: str) -> NDArray:
    b = np.asarray(bits)
    if b.shape not in ((n_bits,), (n_bits, 1)):
        raise ValueError(
            f"format_sample: {name} must have shape ({n_bits},) or ({n_bits}, 1), got {b.shape}"
        )
    return b.reshape(n_bits)


def _bit_string(bits: NDArray) -> str:
    return "".join("1" if bit > 0.5 else "0" for bit in bits)


def _as_integers(function: str, values: ArrayLike) -> NDArray[np.int64]:
    v = np.asarray(values)
    # Refuse floats rather than round them: 2.5 is not a number this module can encode.
    if v.dtype.kind not in "iu":
        raise TypeError(f"{function}: values must be int64 integers, got dtype {v.dtype}")
    if v.dtype.kind == "u" and v.size and v.max() > np.iinfo(np.int64).max:
        raise ValueError(f"{function}: value {v.max()} does not fit in int64")
    return v.astype(np.int64)


def _check_n_bits(function: str, n_bits: int) -> None:
    if not isinstance(n_bits, (int, np.integer)) or isinstance(n_bits, bool):
        raise TypeError(f"{function}: n_bits must be an integer, got {n_bits!r}")
    if not 1 <= n_bits <= MAX_BITS:
        raise ValueError(f"{function}: n_bits must be in [1, {MAX_BITS}], got {n_bits}")


def _check_positive(function: str, **sizes: int) -> None:
    for name, size in sizes.items():
        if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 1:
            raise ValueError(f"{function}: {name} must be a positive integer, got {size!r}")


def as_dtype(x: Any, dtype: Any) -> Any:
    """A model's inputs `x` in its parameters' dtype, so that a float32 model computes in
    float32: converted by an op (a compiled loss converts each call's inputs), or as they
    are where they have it."""
    x = x if isinstance(x, mg.Tensor) else np.asarray(x)
    return x if x.dtype == dtype else mg.astype(x, dtype)
