"""shmbus: a shared-memory message bus between processes on one machine.

One bus is one file-backed shared mapping holding a lock-free ring.
Publishers and subscribers attach to it by name; there is no daemon and no
broker. This package wraps the Rust library (``shmbus`` crate) and speaks the
same bus as the ``shmbus`` command and every Rust program::

    import shmbus

    with shmbus.Subscriber("orders", start="oldest") as sub, shmbus.Publisher("orders") as pub:
        pub.send(b"buy 100 @ 42")
        assert sub.recv(timeout=1.0) == b"buy 100 @ 42"

See docs/python.md in the repository for the rules of blocking, Ctrl-C,
zero-copy views and the numpy convention.
"""

from __future__ import annotations

import struct as _struct
from typing import Any, Optional

from . import _errors
from ._errors import *  # noqa: F401,F403  (the exception classes)
from ._shmbus import (
    WAIT_SLICE_SECONDS,
    BufferWindow,
    Loan,
    MessageRef,
    gc,
    inspect,
    list,
    remove,
)
from ._shmbus import Publisher as _Publisher
from ._shmbus import Subscriber as _Subscriber

__version__ = "0.1.0"

# ------------------------------------------------------------------ numpy
#
# The array convention (docs/python.md): one message per array,
#
#   offset 0   4 bytes  magic b"SBND"
#   offset 4   u8       convention version, 1
#   offset 5   u8       ndim (0 to 32)
#   offset 6   u8       k, the length of the dtype string (1 to 64)
#   offset 7   u8       0 (reserved)
#   offset 8   k bytes  numpy's dtype.str in ASCII, e.g. "<f8", "|u1", "<c16"
#   then       ndim x u64 little-endian: the shape
#   then       zero bytes up to a multiple of 16 from the start (the header)
#   then       the elements in C order, exactly prod(shape) * itemsize bytes.
#
# Only dtypes that dtype.str describes exactly (numbers, bools, datetimes,
# fixed-size bytes/str) are accepted; object and structured dtypes raise
# TypeError. Any language can read it: it is a dtype string, a shape and the
# raw bytes.

ARRAY_MAGIC = b"SBND"
_HEAD = _struct.Struct("<4sBBBB")


def _array_header(dtype_str: str, shape: tuple) -> bytes:
    d = dtype_str.encode("ascii")
    head = _HEAD.pack(ARRAY_MAGIC, 1, len(shape), len(d), 0) + d + _struct.pack(f"<{len(shape)}Q", *shape)
    return head + b"\0" * (-len(head) % 16)


def _c_order(np: Any, array: Any) -> Any:
    """``array`` as a C-contiguous ndarray, copied only if it is not one
    (np.ascontiguousarray would turn a 0-d array into a 1-d one)."""
    a = np.asarray(array)
    return a if a.flags.c_contiguous else a.copy(order="C")


def _check_dtype(np: Any, dtype: Any) -> str:
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None or np.dtype(dtype.str) != dtype:
        raise TypeError(f"numpy dtype {dtype!r} has no exact dtype.str; send arrays of plain numbers, bools or fixed-size strings")
    return dtype.str


def encode_array(array: Any) -> bytes:
    """The bytes of ``array`` in the shmbus array convention (a copy)."""
    import numpy as np

    a = _c_order(np, array)
    return _array_header(_check_dtype(np, a.dtype), a.shape) + a.tobytes()


def decode_array(buffer: Any) -> Any:
    """The numpy array in a message of the shmbus array convention.

    Zero-copy: the array is a read-only view of ``buffer`` (bytes from
    recv(), or a MessageRef's view, in which case it must be deleted before
    the MessageRef is released). Raises ValueError for anything else."""
    import numpy as np

    mv = memoryview(buffer).cast("B")
    if len(mv) < 8 or bytes(mv[:4]) != ARRAY_MAGIC:
        raise ValueError("not a shmbus array message (no SBND magic)")
    _, version, ndim, k, _ = _HEAD.unpack_from(mv, 0)
    if version != 1:
        raise ValueError(f"shmbus array convention version {version}, this version reads 1")
    if k == 0 or k > 64 or ndim > 32:
        raise ValueError(f"bad shmbus array header (ndim {ndim}, dtype length {k})")
    end = 8 + k + 8 * ndim
    if len(mv) < end:
        raise ValueError("shmbus array message shorter than its header")
    try:
        dtype = np.dtype(bytes(mv[8 : 8 + k]).decode("ascii"))
    except (TypeError, ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"bad dtype in shmbus array message: {e}") from None
    shape = _struct.unpack_from(f"<{ndim}Q", mv, 8 + k)
    offset = end + (-end % 16)
    count = 1
    for n in shape:
        count *= n
    if offset + count * dtype.itemsize != len(mv):
        raise ValueError(
            f"shmbus array message of {len(mv)} bytes does not hold {shape} x {dtype} after a {offset}-byte header"
        )
    return np.frombuffer(mv, dtype=dtype, count=count, offset=offset).reshape(shape)


class Publisher(_Publisher):
    __doc__ = _Publisher.__doc__

    def send_array(self, array: Any, timeout: Optional[float] = None) -> None:
        """Publishes a numpy array (dtype and shape included, see
        decode_array), written straight into a loan: one copy of the data."""
        import numpy as np

        a = _c_order(np, array)
        head = _array_header(_check_dtype(np, a.dtype), a.shape)
        flat = a.reshape(-1).view(np.uint8)
        with self.loan(len(head) + a.nbytes, timeout) as view:
            view[: len(head)] = head
            view[len(head) :] = flat


class Subscriber(_Subscriber):
    __doc__ = _Subscriber.__doc__

    def recv_array(self, timeout: Optional[float] = None) -> Any:
        """Receives a message sent with send_array (or encode_array) as a
        read-only numpy array with its dtype and shape. ValueError if the
        message is not in the convention (it is consumed all the same)."""
        return decode_array(self.recv(timeout))


__all__ = [
    "Publisher",
    "Subscriber",
    "Loan",
    "MessageRef",
    "BufferWindow",
    "inspect",
    "list",
    "gc",
    "remove",
    "encode_array",
    "decode_array",
    "ARRAY_MAGIC",
    "WAIT_SLICE_SECONDS",
    *_errors.__all__,
]
