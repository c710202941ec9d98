"""`mg.load` against hostile and damaged files, each built here, small and fast.

The contract: a file costs memory in proportion to the module it fills; anything else is
refused with a one-line ValueError saying what is wrong in the user's words; a refused
file changes nothing, whatever the caller's `np.errstate`.
"""

import io
import os
import struct
import tracemalloc
import zipfile

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minigrad as mg
from minigrad.nn import Module, Parameter
from minigrad.serialization import read_metadata

npy = np.lib.format


class Net(Module):
    """Parameters named as numpy.savez's own keywords, in two dtypes."""

    def __init__(self, seed=0):
        rng = np.random.default_rng(seed)
        self.allow_pickle = Parameter(rng.normal(size=(2, 3)))
        self.file = Parameter(rng.normal(size=4).astype(np.float32))


def _state(module):
    return {name: p.data.copy() for name, p in module.named_parameters()}


def _npy(array):
    buffer = io.BytesIO()
    npy.write_array(buffer, np.asarray(array), allow_pickle=True)
    return buffer.getvalue()


def _npy_header(shape, descr="<f8", version=(1, 0)):
    """A .npy header with no data after it."""
    buffer = io.BytesIO()
    header = {"descr": descr, "fortran_order": False, "shape": shape}
    if version == (1, 0):
        npy.write_array_header_1_0(buffer, header)
    else:
        npy.write_array_header_2_0(buffer, header)
    return buffer.getvalue()


def _archive(members, comment=b"", compression=zipfile.ZIP_STORED):
    """A zip archive of {member name: bytes}, as bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        archive.comment = comment
    return buffer.getvalue()


def _good_members(module):
    return {f"{name}.npy": _npy(value) for name, value in _state(module).items()}


def _declare_size(data, member, size):
    """`data` with `member`'s uncompressed size in the zip headers changed to `size`."""
    data = bytearray(data)
    name = member.encode()
    for signature, size_at, name_at in ((b"PK\x03\x04", 22, 30), (b"PK\x01\x02", 24, 46)):
        at = data.find(signature)
        while at >= 0:
            if data[at + name_at:at + name_at + len(name)] == name:
                data[at + size_at:at + size_at + 4] = struct.pack("<L", size)
            at = data.find(signature, at + 1)
    return bytes(data)


def _refused(tmp_path, data, match, module=None, errstate=None):
    """Load `data` into a module; assert a one-line ValueError matching `match` and an
    unchanged module. Returns the message."""
    path = tmp_path / "hostile.npz"
    path.write_bytes(data)
    module = module or Net(seed=5)
    before = _state(module)
    with np.errstate(**(errstate or {})), pytest.raises(ValueError, match=match) as caught:
        mg.load(module, path)
    message = str(caught.value)
    assert message.startswith(f"load: {path} ") and "\n" not in message
    assert "allow_pickle=" not in message and "_read" not in message
    for name, value in _state(module).items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)
    return message


def _peak_memory_of_refusal(function):
    """The peak of Python and NumPy allocations while `function` is refused."""
    tracemalloc.start()
    try:
        with pytest.raises(ValueError):
            function()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# --- sizes: refused from the zip directory and the headers, before reading data ----------


def test_an_unknown_member_that_inflates_hugely_is_refused_before_inflating(tmp_path):
    bomb = np.zeros(20_000_000, np.uint8).tobytes()  # 20 MB of zeros deflate to 20 kB
    data = _archive({**_good_members(Net()), "payload.npy": bomb},
                    compression=zipfile.ZIP_DEFLATED)
    assert len(data) < 100_000
    _refused(tmp_path, data, r"does not fit Net: unexpected \['payload'\]$")
    path = tmp_path / "hostile.npz"
    assert _peak_memory_of_refusal(lambda: mg.load(Net(), path)) < 2_000_000


def test_a_known_member_declaring_a_huge_size_is_refused_before_inflating(tmp_path):
    data = _archive(_good_members(Net()), compression=zipfile.ZIP_DEFLATED)
    data = _declare_size(data, "file.npy", 1_500_000_000)
    _refused(tmp_path, data, r"'file' declares 1\.5 GB, more than it can hold \(10\.1 kB at most\)")


def test_a_header_declaring_a_huge_shape_is_refused_before_reading_data(tmp_path):
    members = _good_members(Net())
    members["allow_pickle.npy"] = _npy_header((10**15,))
    message = _refused(tmp_path, _archive(members),
                       r"does not fit Net: 'allow_pickle' has shape \(1000000000000000,\), "
                       r"expected \(2, 3\)$")
    assert len(message) < 200
    path = tmp_path / "hostile.npz"
    assert _peak_memory_of_refusal(lambda: mg.load(Net(), path)) < 1_000_000


def test_an_extra_array_with_a_huge_shape_is_refused_by_its_name(tmp_path):
    members = {**_good_members(Net()), "extra.npy": _npy_header((10**15,))}
    _refused(tmp_path, _archive(members), r"does not fit Net: unexpected \['extra'\]$")


def test_a_file_far_larger_than_the_module_is_refused_before_its_directory_is_read(tmp_path):
    # 5,000 empty members: a zip directory of 5,000 entries for a module of 2 parameters.
    members = {f"m{i}.npy": b"" for i in range(5_000)}
    data = _archive({**_good_members(Net()), **members})
    _refused(tmp_path, data, r"is \d+\.\d kB, more than a checkpoint of Net can take "
                             r"\(2\d\d\.\d kB at most\)$")


def test_member_sizes_must_be_exactly_header_and_data(tmp_path):
    members = _good_members(Net())
    members["file.npy"] += b"\0" * 64  # trailing bytes the array does not account for
    _refused(tmp_path, _archive(members), r"is damaged: 'file' takes \d+ bytes where shape "
                                          r"\(4,\) of float32 needs \d+ bytes$")
    members = _good_members(Net())
    members["file.npy"] = members["file.npy"][:-4]  # one float short
    _refused(tmp_path, _archive(members), r"is damaged: 'file' takes")


def test_unknown_and_missing_names_are_listed_briefly(tmp_path):
    members = {f"{'x' * 5000}{i}.npy": _npy(np.ones(1)) for i in range(8)}
    message = _refused(tmp_path, _archive(members),
                       r"missing \['allow_pickle', 'file'\]; unexpected \['xxx.*\.\.\.', .*"
                       r"\.\.\. \(3 more\)\]$")
    assert len(message) < 400


def test_a_name_stored_twice_is_refused(tmp_path):
    buffer = io.BytesIO()
    with pytest.warns(UserWarning, match="Duplicate name"), \
            zipfile.ZipFile(buffer, "w") as archive:
        for name, data in [*_good_members(Net()).items(), ("file.npy", _npy(np.ones(4)))]:
            archive.writestr(name, data)
    _refused(tmp_path, buffer.getvalue(), r"is damaged: it holds 'file' twice$")


# --- values: finite and in range, checked before anything is copied -----------------------


ANY_ERRSTATE = [None, {"all": "raise"}, {"over": "raise", "invalid": "raise"}]


@pytest.mark.parametrize("errstate", ANY_ERRSTATE)
@pytest.mark.parametrize("bad, shown", [(np.nan, "nan"), (np.inf, "inf"), (-np.inf, "-inf")])
def test_non_finite_values_are_refused(tmp_path, bad, shown, errstate):
    members = _good_members(Net())
    values = np.ones(4, np.float32)
    values[2] = bad
    members["file.npy"] = _npy(values)  # the last parameter: the first must stay as it was
    _refused(tmp_path, _archive(members),
             rf"holds {shown} at \(2,\) in 'file'; parameters must be finite$", errstate=errstate)


@pytest.mark.parametrize("errstate", ANY_ERRSTATE)
def test_a_value_that_overflows_float32_is_refused(tmp_path, errstate):
    members = _good_members(Net())
    members["file.npy"] = _npy(np.array([1.0, 2.0, 1e300, 4.0]))  # float64 into float32
    _refused(tmp_path, _archive(members),
             r"holds 1e\+300 at \(2,\) in 'file', beyond the range of its dtype float32$",
             errstate=errstate)


@pytest.mark.skipif(not np.isfinite(np.longdouble("1e4000")),
                    reason="longdouble is float64 on this machine")
@pytest.mark.parametrize("errstate", ANY_ERRSTATE)
def test_a_longdouble_beyond_float64_is_refused(tmp_path, errstate):
    class Wide(Module):
        def __init__(self):
            self.first = Parameter(np.zeros(2))
            self.second = Parameter(np.zeros(2))

    values = np.array([1, np.longdouble("1e4000")], np.longdouble)
    data = _archive({"first.npy": _npy(np.ones(2)), "second.npy": _npy(values)})
    _refused(tmp_path, data, r"holds 1e\+4000 at \(1,\) in 'second', beyond the range of its "
                             r"dtype float64$", module=Wide(), errstate=errstate)


def test_an_integer_beyond_float16_is_refused(tmp_path):
    class Half(Module):
        def __init__(self):
            self.weight = Parameter(np.zeros(3, np.float16))

    data = _archive({"weight.npy": _npy(np.array([1, 70_000, 2], np.int64))})
    _refused(tmp_path, data, r"holds 70000 at \(1,\) in 'weight', beyond the range of its "
                             r"dtype float16$", module=Half(), errstate={"all": "raise"})


def test_values_in_range_are_cast_to_the_parameters_dtype(tmp_path):
    source = Net(seed=1)
    members = {"allow_pickle.npy": _npy(source.allow_pickle.data.astype(np.float32)),
               "file.npy": _npy(source.file.data.astype(np.float64))}
    path = tmp_path / "cast.npz"
    path.write_bytes(_archive(members))
    target = Net(seed=2)
    with np.errstate(all="raise"):
        mg.load(target, path)
    assert target.file.dtype == np.float32 and target.allow_pickle.dtype == np.float64
    np.testing.assert_array_equal(target.file.data, source.file.data)
    np.testing.assert_array_equal(target.allow_pickle.data,
                                  source.allow_pickle.data.astype(np.float32))


@pytest.mark.parametrize("array, match", [
    (np.array(["a", "b", "c", "d"]), r"'file' has dtype <U1, which cannot be cast to float32$"),
    (np.ones(4, complex), r"'file' has dtype complex128, which cannot be cast to float32$"),
    (np.array([1, 2, 3, 4], object),
     r"holds Python objects in 'file' \(dtype object\); minigrad never unpickles$"),
])
def test_arrays_of_other_kinds_are_refused_from_their_header(tmp_path, array, match):
    members = _good_members(Net())
    members["file.npy"] = _npy(array)
    _refused(tmp_path, _archive(members), match)


# --- damage -----------------------------------------------------------------------------


def test_a_damaged_header_is_refused(tmp_path):
    members = _good_members(Net())
    members["file.npy"] = b"\x93NUMPY\x01\x00\x10\x00{'descr': '<f4',}\n" + b"\0" * 16
    _refused(tmp_path, _archive(members), r"is damaged: 'file' has no readable \.npy header$")
    members["file.npy"] = b"not an array at all"
    _refused(tmp_path, _archive(members), r"is damaged: 'file' has no readable \.npy header$")


def test_a_header_of_another_npy_version_is_refused(tmp_path):
    members = _good_members(Net())
    members["file.npy"] = b"\x93NUMPY\x03\x00" + _npy(np.ones(4, np.float32))[8:]
    _refused(tmp_path, _archive(members), r"holds 'file' in \.npy format 3\.0")


def test_a_changed_data_byte_fails_the_checksum(tmp_path):
    data = bytearray(_archive(_good_members(Net())))
    at = data.find(_npy(_state(Net())["file"])) + 130  # inside the floats of 'file'
    data[at] ^= 0xFF
    _refused(tmp_path, bytes(data), r"is damaged: 'file' cannot be read \(Bad CRC-32")


def test_an_encrypted_member_is_refused(tmp_path):
    data = bytearray(_archive(_good_members(Net())))
    at = data.find(b"PK\x01\x02")  # the first entry of the zip directory
    data[at + 8] |= 0x1  # its "encrypted" flag
    _refused(tmp_path, bytes(data), r"holds 'allow_pickle' encrypted")


def test_a_comment_marked_as_ours_must_hold_metadata(tmp_path):
    members = _good_members(Net())
    _refused(tmp_path, _archive(members, comment=b'{"minigrad-checkpoint": 1, "meta'),
             r"is damaged: its metadata is not readable JSON$")
    _refused(tmp_path, _archive(members, comment=b'{"minigrad-checkpoint": 7}'),
             r"is in checkpoint format 7; this minigrad reads formats 1 and 2$")
    _refused(tmp_path, _archive(members, comment=b'{"minigrad-checkpoint": 2, "metadata": {}}'),
             r"is damaged: its metadata does not match its checksum$")
    _refused(tmp_path, _archive(members, comment=b'{"minigrad-checkpoint": 1, "metadata": [1]}'),
             r"is damaged: its metadata is not a table of strings$")


def test_every_single_bit_flip_of_the_metadata_is_refused_or_harmless(tmp_path):
    """zip checks its members' bytes, not the comment holding the metadata: a flipped bit
    there (a seed's digit, a preset's letter) is refused by its checksum, never read."""
    path = tmp_path / "model.npz"
    metadata = {"preset": "tutorial", "seed": "1234567", "n_states": "3"}
    mg.save(Net(), path, metadata=metadata)
    data = path.read_bytes()
    comment = zipfile.ZipFile(path).comment
    at = data.rindex(comment)
    damaged = tmp_path / "damaged.npz"
    outcomes = set()
    for bit in range(8 * len(comment)):
        flipped = bytearray(data)
        flipped[at + bit // 8] ^= 1 << bit % 8
        damaged.write_bytes(flipped)
        for read in (read_metadata, lambda p: mg.load(Net(), p)):
            try:
                got = read(damaged)
            except ValueError as error:
                assert str(error).endswith(("checksum", "not readable", "readable JSON",
                                            "table of strings", "reads formats 1 and 2")), error
                outcomes.add("refused")
            else:  # (none seen: every flip breaks the JSON, the marker or the checksum)
                assert got == metadata, (bit, got)
                outcomes.add("harmless")
    assert "refused" in outcomes
    assert read_metadata(path) == metadata == mg.load(Net(), path)


@pytest.mark.parametrize("content, what", [
    (b"weights: 1 2 3\n", "is a text file, not a .npz archive"),
    (b"", "is empty, not a .npz archive"),
    (_npy(np.ones(3)), "is a single .npy array, not a .npz archive of named arrays"),
    (b"\x80\x04\x95" + bytes(range(256)), r"is a Python pickle, not a .npz archive"),
    (bytes(range(256)) * 4, r"is not a .npz archive \(not a zip file\)"),
    (_archive(_good_members(Net()))[:-30], r"is a damaged .npz archive \("),
])
def test_a_file_that_is_not_an_archive_says_what_it_is(tmp_path, content, what):
    _refused(tmp_path, content, what)


def test_a_directory_and_a_fifo_are_refused_without_blocking(tmp_path):
    (tmp_path / "dir.npz").mkdir()
    with pytest.raises(ValueError, match=r"dir\.npz is a directory, not a checkpoint file$"):
        mg.load(Net(), tmp_path / "dir.npz")
    os.mkfifo(tmp_path / "fifo.npz")
    with pytest.raises(ValueError, match=r"fifo\.npz is not a regular file"):
        mg.load(Net(), tmp_path / "fifo.npz")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_an_unreadable_file_raises_permission_error(tmp_path):
    path = tmp_path / "private.npz"
    mg.save(Net(), path)
    path.chmod(0)
    with pytest.raises(PermissionError, match="Permission denied"):
        mg.load(Net(), path)


# --- any damage: refused or loaded whole, never another exception -----------------------


@pytest.fixture(scope="module")
def saved_bytes(tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "net.npz"
    mg.save(Net(seed=1), path, metadata={"preset": "small"})
    return path.read_bytes()


def _load_or_refuse(tmp_path, data):
    path = tmp_path / "fuzzed.npz"
    path.write_bytes(data)
    target = Net(seed=2)
    before = _state(target)
    with np.errstate(all="raise"):
        try:
            mg.load(target, path)
        except ValueError as error:
            assert "\n" not in str(error)
            for name, value in _state(target).items():
                np.testing.assert_array_equal(value, before[name], err_msg=name)
            return
    for name, value in _state(target).items():  # loaded: then it is the saved model
        np.testing.assert_array_equal(value, _state(Net(seed=1))[name], err_msg=name)


@given(position=st.integers(0, 10**6), flip=st.integers(1, 255))
def test_a_changed_byte_is_refused_or_harmless(tmp_path_factory, saved_bytes, position, flip):
    data = bytearray(saved_bytes)
    data[position % len(data)] ^= flip
    _load_or_refuse(tmp_path_factory.mktemp("flip"), bytes(data))


@given(length=st.integers(0, 10**6))
def test_a_truncated_file_is_refused(tmp_path_factory, saved_bytes, length):
    data = saved_bytes[:length % len(saved_bytes)]
    path = tmp_path_factory.mktemp("cut") / "cut.npz"
    path.write_bytes(data)
    with pytest.raises(ValueError, match=r"^load: .* (is|holds) "):
        mg.load(Net(), path)
