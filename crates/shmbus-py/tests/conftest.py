"""One child-process harness and one synthetic-message format for the
Python suite (the format of docs/cli.md, checked by `shmbus sub --verify`).

Every test gets its own bus directory; every wait has a timeout; no test
asserts how long anything took."""

from __future__ import annotations

import os
import queue
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, List, Optional

import pytest

import shmbus

REPO = Path(__file__).resolve().parents[3]
WAIT = 20.0  # seconds: the bound of every wait for another process


def wait_for(cond: Callable[[], object], what: str, timeout: float = WAIT) -> object:
    """Polls `cond` until it is true; fails the test after `timeout` seconds."""
    end = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > end:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.005)


@pytest.fixture
def busdir(tmp_path: Path) -> str:
    d = tmp_path / "buses"
    d.mkdir(mode=0o700)
    return str(d)


@pytest.fixture(scope="session")
def shmbus_bin() -> str:
    """The `shmbus` binary: $SHMBUS_BIN, else target/{debug,release}/shmbus."""
    env = os.environ.get("SHMBUS_BIN")
    candidates = [Path(env)] if env else [REPO / "target" / "debug" / "shmbus", REPO / "target" / "release" / "shmbus"]
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return str(c)
    pytest.fail(f"no shmbus binary at {[str(c) for c in candidates]}: run `cargo build -p shmbus-cli` first")


class Child:
    """A real process with its stdout read line by line into a queue."""

    def __init__(self, argv: List[str], env: Optional[dict] = None) -> None:
        self.argv = argv
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )
        self.lines: "queue.Queue[Optional[str]]" = queue.Queue()
        self.stderr: List[str] = []
        threading.Thread(target=self._pump_out, daemon=True).start()
        threading.Thread(target=self._pump_err, daemon=True).start()

    def _pump_out(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)  # end of output

    def _pump_err(self) -> None:
        for line in self.proc.stderr:
            self.stderr.append(line.rstrip("\n"))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def expect(self, prefix: str, timeout: float = WAIT) -> str:
        """The next stdout line, which must start with `prefix`."""
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"{self.argv[:3]}: no line {prefix!r} within {timeout} s; stderr: {''.join(self.stderr)[-2000:]}")
        if line is None or not line.startswith(prefix):
            self.wait(WAIT, check=False)
            pytest.fail(f"{self.argv[:3]}: expected {prefix!r}, got {line!r}; stderr: {chr(10).join(self.stderr)[-2000:]}")
        return line

    def wait(self, timeout: float = WAIT, check: bool = True) -> int:
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"{self.argv[:3]} did not exit within {timeout} s")
        if check and rc != 0:
            pytest.fail(f"{self.argv[:3]} exited with {rc}; stderr: {chr(10).join(self.stderr)[-2000:]}")
        return rc

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            self.proc.wait(timeout=WAIT)


@pytest.fixture
def spawn():
    """spawn(argv) or spawn_python(code, *args): children killed at the end."""
    children: List[Child] = []

    def start(argv: List[str]) -> Child:
        c = Child(argv)
        children.append(c)
        return c

    yield start
    for c in children:
        c.kill()


def python_child(code: str, *args: str) -> List[str]:
    """argv running `code` in a fresh interpreter (sys.argv[1:] = args)."""
    return [sys.executable, "-u", "-c", code, *args]


# ------------------------------------------------------ synthetic messages

FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3
MASK = (1 << 64) - 1
_SYN = struct.Struct("<QQI2sBBQ")


def fnv1a64(data: bytes) -> int:
    h = FNV_OFFSET
    for b in data:
        h = ((h ^ b) * FNV_PRIME) & MASK
    return h


def synthetic(pub_id: int, seq: int, size: int) -> bytes:
    """A synthetic message (docs/cli.md) of `size` >= 40 bytes."""
    head = _SYN.pack(pub_id, seq, size, b"SB", 1, 0, time.monotonic_ns())
    filler = bytes((seq + i) & 0xFF for i in range(size - 40))
    body = head + filler
    return body + struct.pack("<Q", fnv1a64(body))


def parse_synthetic(msg: bytes):
    """(publisher id, sequence) of a valid synthetic message; AssertionError otherwise."""
    assert len(msg) >= 40, f"{len(msg)}-byte message is too short"
    pub_id, seq, n, tag, version, _flags, _t = _SYN.unpack_from(msg)
    assert tag == b"SB" and version == 1, "not a synthetic message"
    assert n == len(msg), f"length field {n} != {len(msg)}"
    (check,) = struct.unpack_from("<Q", msg, len(msg) - 8)
    assert check == fnv1a64(msg[:-8]), f"wrong checksum in message {seq}"
    return pub_id, seq
