"""numpy arrays between processes: dtype and shape recovered through the
documented convention (docs/python.md)."""

from __future__ import annotations

import numpy as np
import pytest

import shmbus
from conftest import python_child


def arrays():
    """The same arrays in every process (deterministic)."""
    rng = np.random.default_rng(7)
    return [
        np.arange(12.0).reshape(3, 4),
        rng.integers(-1000, 1000, size=(2, 3, 5), dtype=np.int16),
        np.array(3.5 + 2j, dtype=np.complex128),  # 0-d
        rng.random((4, 6)).astype(np.float32)[:, ::2],  # not contiguous: sent as a C-order copy
        np.array([True, False, True]),
        np.zeros((0, 5), dtype=np.uint8),
        np.arange(6, dtype=">i4").reshape(2, 3),  # big-endian
        np.array(["2024-01-01", "2025-06-30"], dtype="datetime64[D]"),
        np.array([b"ab", b"cde"], dtype="S3"),
        rng.random(16384),  # 128 KiB > 64 KiB default max_message: a bigger bus
    ]


PUBLISHER = """
import sys, shmbus
sys.path.insert(0, sys.argv[3])
from test_numpy import arrays
with shmbus.Publisher(sys.argv[1], dir=sys.argv[2], capacity=1 << 20, max_message=200_000) as publ:
    print("READY", flush=True)
    for a in arrays():
        publ.send_array(a, timeout=20)
    print("SENT", flush=True)
"""


def test_numpy_round_trip_between_processes(busdir, spawn):
    """Arrays of many dtypes and shapes sent by another process arrive with
    their dtype, shape and values; recv_array gives a read-only zero-copy view."""
    sub = shmbus.Subscriber("arrays", dir=busdir, capacity=1 << 20, max_message=200_000, start="oldest")
    import os

    child = spawn(python_child(PUBLISHER, "arrays", busdir, os.path.dirname(__file__)))
    child.expect("READY")
    for want in arrays():
        got = sub.recv_array(timeout=20)
        assert got.dtype == want.dtype
        assert got.shape == want.shape
        np.testing.assert_array_equal(got, want)
        assert not got.flags.writeable
    child.expect("SENT")
    child.wait()
    sub.close()


def test_numpy_through_a_borrowed_message(busdir):
    """decode_array over a MessageRef's view is zero-copy; the MessageRef cannot
    be released while the array is alive, and can once it is deleted."""
    with shmbus.Subscriber("zc", dir=busdir) as sub, shmbus.Publisher("zc", dir=busdir) as publ:
        a = np.linspace(0, 1, 1000).reshape(10, 100)
        publ.send_array(a)
        ref = sub.recv_ref(timeout=5)
        arr = shmbus.decode_array(ref.view)
        np.testing.assert_array_equal(arr, a)
        with pytest.raises(BufferError):
            ref.release()
        assert ref.open
        del arr
        ref.release()
        assert not ref.open


def test_numpy_buffers_are_sent_without_conversion(busdir):
    """send() takes a numpy array's bytes directly (any dtype, C-contiguous);
    a non-contiguous array is refused by the buffer protocol itself."""
    with shmbus.Subscriber("raw", dir=busdir) as sub, shmbus.Publisher("raw", dir=busdir) as publ:
        a = np.arange(10, dtype=np.float64)
        publ.send(a)
        assert sub.recv(timeout=5) == a.tobytes()
        with pytest.raises(ValueError, match="not C-contiguous"):  # numpy's own refusal
            publ.send(np.arange(10)[::2])


def test_unsupported_dtypes_and_foreign_messages(busdir):
    with pytest.raises(TypeError):
        shmbus.encode_array(np.array([object()]))
    with pytest.raises(TypeError):
        shmbus.encode_array(np.zeros(2, dtype=[("a", "<i4"), ("b", "<f8")]))
    with pytest.raises(ValueError):
        shmbus.decode_array(b"hello world, not an array")
    good = shmbus.encode_array(np.arange(4, dtype=np.int32))
    np.testing.assert_array_equal(shmbus.decode_array(good), np.arange(4))
    with pytest.raises(ValueError):
        shmbus.decode_array(good[:-1])  # truncated
    assert len(good) % 16 == 0 and good[:4] == b"SBND"
