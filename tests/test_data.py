"""models.data: shapes, encodings, errors, the printed layout, and reproducibility."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minigrad.models.data import (
    addition_data,
    bits_to_int,
    counting_data,
    encode_sum,
    format_sample,
    int_to_bits,
)

seeds = st.integers(min_value=0, max_value=2**32 - 1)


# --- counting -------------------------------------------------------------------------


@given(seed=seeds, n=st.integers(1, 30), length=st.integers(1, 20))
def test_counting_data_shapes_values_and_targets(seed, n, length):
    X, t = counting_data(np.random.default_rng(seed), n_sequences=n, length=length)
    assert X.shape == (n, length) and t.shape == (n,)
    assert X.dtype == t.dtype == np.float64
    assert set(np.unique(X)) <= {0.0, 1.0}
    np.testing.assert_array_equal(t, X.sum(axis=1))


def test_counting_data_defaults_are_the_tutorials_size():
    X, t = counting_data(np.random.default_rng(0))
    assert X.shape == (20, 10) and t.shape == (20,)


def test_counting_data_draws_both_bits():
    # A rounded uniform is 1 with probability one half: 2000 draws without a 0 or a 1
    # would mean the rounding is wrong.
    X, _ = counting_data(np.random.default_rng(0), n_sequences=100, length=20)
    assert 0.4 < X.mean() < 0.6


# --- bits -----------------------------------------------------------------------------


@given(data=st.data(), n_bits=st.integers(1, 62))
def test_int_to_bits_round_trip(data, n_bits):
    values = data.draw(st.lists(st.integers(0, 2**n_bits - 1), min_size=0, max_size=8))
    v = np.array(values, dtype=np.int64)
    bits = int_to_bits(v, n_bits)
    assert bits.shape == (len(values), n_bits) and bits.dtype == np.float64
    assert set(np.unique(bits)) <= {0.0, 1.0}
    back = bits_to_int(bits)
    assert back.dtype == np.int64
    np.testing.assert_array_equal(back, v)


def test_int_to_bits_is_least_significant_first():
    np.testing.assert_array_equal(int_to_bits(6, 4), [0.0, 1.0, 1.0, 0.0])
    assert int_to_bits(np.array([[1], [8]]), 4).shape == (2, 1, 4)


@given(value=st.integers(0, 2**16 - 1))
def test_bits_to_int_thresholds_probabilities_at_one_half(value):
    bits = int_to_bits(value, 16)
    # Probabilities on the right side of one half read back as the same integer.
    probabilities = np.where(bits == 1.0, 0.5 + 1e-9, 0.5)
    assert bits_to_int(probabilities) == value


@pytest.mark.parametrize(
    ("value", "n_bits", "message"),
    [
        (-1, 8, r"int_to_bits: value -1 is negative"),
        (256, 8, r"int_to_bits: value 256 does not fit in 8 bits"),
        (np.array([3, 8]), 3, r"int_to_bits: value 8 does not fit in 3 bits"),
    ],
)
def test_int_to_bits_errors_name_the_function_and_value(value, n_bits, message):
    with pytest.raises(ValueError, match=message):
        int_to_bits(value, n_bits)


def test_int_to_bits_refuses_floats():
    with pytest.raises(TypeError, match="int_to_bits"):
        int_to_bits(np.array([2.5]), 4)


# --- addition -------------------------------------------------------------------------


@given(seed=seeds, n=st.integers(1, 50), n_bits=st.integers(2, 16))
def test_addition_data_targets_are_the_sums(seed, n, n_bits):
    X, T = addition_data(np.random.default_rng(seed), n, n_bits)
    assert X.shape == (n, n_bits, 2) and T.shape == (n, n_bits, 1)
    assert X.dtype == T.dtype == np.float64
    assert set(np.unique(X)) <= {0.0, 1.0} and set(np.unique(T)) <= {0.0, 1.0}
    a, b = bits_to_int(X[..., 0]), bits_to_int(X[..., 1])
    assert a.max() < 2 ** (n_bits - 1) and b.max() < 2 ** (n_bits - 1)
    np.testing.assert_array_equal(bits_to_int(T[..., 0]), a + b)


@given(seed=seeds)
def test_addition_data_respects_max_operand(seed):
    X, T = addition_data(np.random.default_rng(seed), 200, 8, max_operand=128)
    a, b = bits_to_int(X[..., 0]), bits_to_int(X[..., 1])
    assert a.max() < 128 and b.max() < 128
    np.testing.assert_array_equal(bits_to_int(T[..., 0]), a + b)


def test_addition_data_covers_the_operand_range():
    X, _ = addition_data(np.random.default_rng(0), 2000, 7)
    operands = np.concatenate([bits_to_int(X[..., 0]), bits_to_int(X[..., 1])])
    np.testing.assert_array_equal(np.unique(operands), np.arange(64))


def test_addition_data_is_reproducible_from_a_seeded_generator():
    first = addition_data(np.random.default_rng(1234), 50, 7)
    again = addition_data(np.random.default_rng(1234), 50, 7)
    other = addition_data(np.random.default_rng(1235), 50, 7)
    for x, y in zip(first, again):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(first[0], other[0])
    np.testing.assert_array_equal(
        counting_data(np.random.default_rng(7))[0], counting_data(np.random.default_rng(7))[0]
    )


def test_addition_data_refuses_operands_whose_sum_does_not_fit():
    with pytest.raises(ValueError, match=r"addition_data: max_operand=129 .* 8 bits"):
        addition_data(np.random.default_rng(0), 10, 8, max_operand=129)
    with pytest.raises(ValueError, match=r"addition_data: max_operand must be"):
        addition_data(np.random.default_rng(0), 10, 8, max_operand=0)


def test_encode_sum_single_samples_from_the_write_ups():
    X, T = encode_sum(254, 1, 8)
    assert X.shape == (1, 8, 2) and T.shape == (1, 8, 1)
    np.testing.assert_array_equal(T[0, :, 0], np.ones(8))
    X, T = encode_sum(np.array([37, 1679]), np.array([43, 1967]), 13)
    np.testing.assert_array_equal(bits_to_int(X[..., 0]), [37, 1679])
    np.testing.assert_array_equal(bits_to_int(T[..., 0]), [80, 3646])


def test_encode_sum_errors():
    with pytest.raises(ValueError, match=r"encode_sum: 254 \+ 2 = 256 does not fit in 8 bits"):
        encode_sum(254, 2, 8)
    with pytest.raises(ValueError, match=r"encode_sum: operand -1 is negative"):
        encode_sum(np.array([3, -1]), 1, 8)


# --- layout ---------------------------------------------------------------------------

EXPECTED_37_PLUS_43 = (
    "x1:   1010010   37\n"
    "x2: + 1101010   43\n"
    "      -------\n"
    "t:  = 0000101   80\n"
    "y:    0000101   80"
)


def test_format_sample_37_plus_43_exactly():
    X, T = encode_sum(37, 43, 7)
    # The tutorial's example (part 2): 37 + 43 = 80 reads x1 = 1010010, x2 = 1101010,
    # t = 0000101.
    probabilities = np.where(T[0] == 1.0, 0.97, 0.02)
    assert format_sample(X[0], T[0], probabilities) == EXPECTED_37_PLUS_43
    without_prediction = format_sample(X[0], T[0, :, 0])
    assert without_prediction == EXPECTED_37_PLUS_43.rsplit("\n", 1)[0]


def test_format_sample_right_aligns_values_of_different_widths():
    X, T = encode_sum(5, 120, 8)
    wrong = np.zeros(8)
    assert format_sample(X[0], T[0], wrong) == (
        "x1:   10100000     5\n"
        "x2: + 00011110   120\n"
        "      --------\n"
        "t:  = 10111110   125\n"
        "y:    00000000     0"
    )


def test_format_sample_checks_shapes():
    X, T = encode_sum(1, 2, 4)
    with pytest.raises(ValueError, match="format_sample: x"):
        format_sample(X[0, :, :1], T[0])
    with pytest.raises(ValueError, match="format_sample: prediction"):
        format_sample(X[0], T[0], np.zeros(5))
