"""The exceptions of shmbus: one class per Rust error variant, same names,
same messages. Where a built-in exception means the same thing the class
derives from it too, so ``except FileNotFoundError`` or ``except
TimeoutError`` work as a Python user expects."""

from __future__ import annotations


class Error(Exception):
    """Base class of every shmbus error; also what any error variant this
    version does not know by name is raised as (with the Rust message)."""


class Closed(Error, ValueError):
    """The Publisher or Subscriber was closed (like I/O on a closed file)."""


# --- attaching, creating, the bus file (shmbus::Error)
class InvalidName(Error, ValueError):
    """The bus name is not ``[A-Za-z0-9][A-Za-z0-9._-]{0,63}``; nothing was touched."""


class InvalidConfig(Error, ValueError):
    """A setting is out of range (or an unknown overflow/wait/start word)."""


class UnsafeDir(Error, PermissionError):
    """The bus directory cannot be used safely (owner, permissions)."""


class NotFound(Error, FileNotFoundError):
    """No bus of that name exists in the directory."""


class PermissionDenied(Error, PermissionError):
    """The filesystem refused access to the bus file or directory."""


class NotABusFile(Error):
    """The path exists but is not a regular file (a symlink, a directory...)."""


class NoSpace(Error):
    """The filesystem has no room for a bus of this size."""


class Io(Error, OSError):
    """Another system call failed."""


class Corrupt(Error):
    """The bus file is damaged: a size, offset or position in it is impossible."""


class Foreign(Corrupt):
    """The file does not start with the shmbus magic: it is not a bus file."""


class Version(Corrupt):
    """The file was written by a build with another layout version."""


class Incompatible(Error):
    """The bus exists with settings other than those requested."""


class PeersFull(Error):
    """Every peer slot of the bus is taken by a live process."""


class Busy(Error):
    """The bus was being created or removed by another process for too long."""


class AlreadyExists(Error, FileExistsError):
    """A bus of that name exists already."""


class InUse(Error):
    """Live peers are attached; the bus was not removed."""


# --- sending (shmbus::SendError)
class Full(Error):
    """No space now (block mode: the slowest subscriber is a whole ring behind)."""


class Timeout(Error, TimeoutError):
    """Nothing arrived (recv) or no space came (send) before the timeout."""


class TooLarge(Error, ValueError):
    """The payload is larger than the bus's max_message."""


class Encode(Error, ValueError):
    """A typed message could not be encoded."""


# --- receiving (shmbus::RecvError)
class Lagged(Error):
    """Overwrite mode: publishers overran this subscriber, which lost exactly
    ``lost`` messages. The next receive returns the oldest intact message."""

    lost: int

    def __init__(self, message: str, lost: int = 0) -> None:
        super().__init__(message)
        self.lost = lost

    def __reduce__(self):  # keep `lost` through pickling (multiprocessing)
        return (type(self), (str(self), self.lost))


class WrongSize(Error, ValueError):
    """The message's length does not match the expected type's size."""


class Decode(Error, ValueError):
    """The message could not be decoded."""


__all__ = [name for name, obj in dict(globals()).items() if isinstance(obj, type) and issubclass(obj, Error)]

for _name in __all__:
    globals()[_name].__module__ = "shmbus"
del _name
