"""Processes killed, interrupted, or handed a hostile file."""

from __future__ import annotations

import json
import os
import signal

import pytest

import shmbus
from conftest import python_child, wait_for

SUB_SLEEPING = """
import sys, time, shmbus
sub = shmbus.Subscriber(sys.argv[1], dir=sys.argv[2])
print("READY", sub.slot, flush=True)
time.sleep(600)  # holds publishers back: never reads
"""


def test_sigkilled_subscriber_is_reaped_and_does_not_hold_back(busdir, spawn):
    """A Python subscriber that never reads holds a block-mode publisher back
    (try_send raises Full); once it is SIGKILLed, its slot is reaped and the
    publisher goes on (several rings' worth of messages)."""
    with shmbus.Publisher("crash", dir=busdir, capacity=4096, overflow="block") as publ:
        child = spawn(python_child(SUB_SLEEPING, "crash", busdir))
        child.expect("READY")
        for _ in range(10_000):
            try:
                publ.try_send(b"x" * 100)
            except shmbus.Full:
                break
        else:
            pytest.fail("a live subscriber that never reads did not hold the publisher back")
        st = shmbus.inspect("crash", dir=busdir)
        assert [p["alive"] for p in st["peers"] if p["pid"] == child.pid] == [True]
        child.kill(signal.SIGKILL)
        for _ in range(500):  # ~12 rings of 4 KiB
            publ.send(b"y" * 100, timeout=20)
        st = shmbus.inspect("crash", dir=busdir)
        assert st["live_subscribers"] == 0
        assert not any(p["alive"] and p["kind"] == "subscriber" for p in st["peers"])
        assert not any(p["pid"] == child.pid and p["kind"] == "subscriber" for p in st["peers"]), "slot not reaped"


SUB_INTERRUPTED = """
import sys, shmbus
sub = shmbus.Subscriber(sys.argv[1], dir=sys.argv[2], wait="park")
print("READY", flush=True)
try:
    sub.recv()  # timeout=None: blocks until Ctrl-C
    print("NOT INTERRUPTED", flush=True)
except KeyboardInterrupt:
    print("INTERRUPTED", flush=True)
msg = sub.recv(timeout=20)
print("GOT", msg.decode(), sub.last_seq, flush=True)
sub.close()
print("CLOSED", flush=True)
"""


def test_keyboard_interrupt_during_recv(busdir, spawn):
    """SIGINT to a process blocked in recv() raises KeyboardInterrupt there;
    the subscriber keeps its slot, receives the next message (none lost) and
    detaches cleanly."""
    with shmbus.Publisher("intr", dir=busdir) as publ:
        child = spawn(python_child(SUB_INTERRUPTED, "intr", busdir))
        child.expect("READY")
        # Parked in recv: the bus's waiter count says so.
        wait_for(lambda: shmbus.inspect("intr", dir=busdir)["data_waiters"] >= 1, "the child to park in recv")
        os.kill(child.pid, signal.SIGINT)
        child.expect("INTERRUPTED")
        assert shmbus.inspect("intr", dir=busdir)["live_subscribers"] == 1
        publ.send(b"after")
        assert child.expect("GOT").split() == ["GOT", "after", "0"]
        child.expect("CLOSED")
        assert child.wait() == 0
        st = shmbus.inspect("intr", dir=busdir)
        assert st["live_subscribers"] == 0
        assert [p["kind"] for p in st["peers"]] == ["publisher"]


HOSTILE = """
import json, os, random, sys, shmbus
d, name = sys.argv[1], sys.argv[2]
out = []
def attempt(what, f):
    try:
        r = f()
        out.append([what, "ok", None])
        return r
    except shmbus.Error as e:
        out.append([what, type(e).__name__, str(e)])
    except Exception as e:  # anything that is not a shmbus.Error is a bug
        out.append([what, "NOT-SHMBUS:" + type(e).__name__, str(e)])
attempt("subscriber", lambda: shmbus.Subscriber(name, dir=d, create=False))
attempt("publisher", lambda: shmbus.Publisher(name, dir=d, create=False))
attempt("open_or_create", lambda: shmbus.Subscriber(name, dir=d))
attempt("inspect", lambda: shmbus.inspect(name, dir=d))
ls = shmbus.list(dir=d)
out.append(["list", "ok" if ls and ls[0]["error"] is None else "listed-error", ls[0]["error"] if ls else None])
print(json.dumps(out), flush=True)
"""


def _run_hostile(spawn, busdir, name):
    child = spawn(python_child(HOSTILE, busdir, name))
    line = child.expect("[")
    rc = child.wait(check=False)
    assert rc == 0, f"the interpreter died (exit {rc}) on a hostile bus file: {child.stderr}"
    return json.loads(line)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\0" * 4096,
        os.urandom(16384),
        b"not a bus at all\n" * 1000,
    ],
    ids=["empty", "zeros", "random", "text"],
)
def test_hostile_bus_file_raises_never_crashes(busdir, spawn, content):
    """Garbage where a bus file should be: attaching, creating over it and
    inspecting raise shmbus exceptions (never another type, never a crash
    of the interpreter, which runs in a child process so that a crash would show)."""
    with open(os.path.join(busdir, "evil.bus"), "wb") as f:
        f.write(content)
    os.chmod(os.path.join(busdir, "evil.bus"), 0o600)
    results = _run_hostile(spawn, busdir, "evil")
    for what, outcome, msg in results:
        assert not outcome.startswith("NOT-SHMBUS"), (what, outcome, msg)
        if what != "list":
            assert outcome != "ok", f"{what} accepted a garbage bus file"
            assert "evil" in msg
    assert results[-1][1] == "listed-error"


def test_corrupted_header_fields_raise_never_crash(busdir, spawn):
    """A real bus file whose header bytes are overwritten one field at a time
    (after the magic) with random values: every attempt either works or raises
    a shmbus exception, and the interpreter survives all of them."""
    with shmbus.Publisher("real", dir=busdir, capacity=4096, persistent=True):
        pass
    path = os.path.join(busdir, "real.bus")
    original = open(path, "rb").read()
    rng = __import__("random").Random(1234)
    outcomes = set()
    for i in range(24):
        data = bytearray(original)
        off = 8 + (i * 8) % 248
        data[off : off + 8] = rng.randbytes(8)
        name = f"bad{i}"
        with open(os.path.join(busdir, f"{name}.bus"), "wb") as f:
            f.write(data)
        os.chmod(os.path.join(busdir, f"{name}.bus"), 0o600)
        for what, outcome, msg in _run_hostile(spawn, busdir, name)[:4]:
            assert not outcome.startswith("NOT-SHMBUS"), (i, what, outcome, msg)
            outcomes.add(outcome)
        os.remove(os.path.join(busdir, f"{name}.bus"))
    assert outcomes - {"ok"}, "no corruption was ever detected"


def test_garbage_ring_behind_a_valid_header(busdir):
    """A valid header over a ring of random bytes: a subscriber from `oldest`
    gets a shmbus exception or nothing, never garbage presented as a message
    it cannot account for, and never a crash."""
    with shmbus.Publisher("ring", dir=busdir, capacity=4096, persistent=True) as publ:
        publ.send(b"real message")
        data_offset = shmbus.inspect("ring", dir=busdir)
    path = os.path.join(busdir, "ring.bus")
    raw = bytearray(open(path, "rb").read())
    size = len(raw)
    raw[size - 4096 :] = os.urandom(4096)
    open(path, "wb").write(raw)
    assert data_offset["capacity"] == 4096
    sub = shmbus.Subscriber("ring", dir=busdir, start="oldest", create=False)
    for _ in range(20):
        try:
            sub.recv(timeout=0.05)
        except (shmbus.Timeout, shmbus.Corrupt, shmbus.Lagged):
            pass
    sub.close()


PUB_BLOCKED = """
import sys, shmbus
publ = shmbus.Publisher(sys.argv[1], dir=sys.argv[2], create=False, wait="park")
n = 0
while True:
    try:
        publ.try_send(b"fill")
        n += 1
    except shmbus.Full:
        break
print("FULL", n, flush=True)
try:
    publ.send(b"blocked")  # timeout=None: waits for space until Ctrl-C
    print("NOT INTERRUPTED", flush=True)
except KeyboardInterrupt:
    print("INTERRUPTED", flush=True)
publ.send(b"after", timeout=20)
print("SENT", flush=True)
publ.close()
"""


def test_keyboard_interrupt_during_blocked_send(busdir, spawn):
    """SIGINT to a publisher blocked in send() on a full block-mode ring raises
    KeyboardInterrupt; the interrupted message was not published, and the
    publisher keeps its slot and publishes again once there is space."""
    sub = shmbus.Subscriber("sendintr", dir=busdir, capacity=4096)
    child = spawn(python_child(PUB_BLOCKED, "sendintr", busdir))
    n = int(child.expect("FULL").split()[1])
    wait_for(lambda: shmbus.inspect("sendintr", dir=busdir)["space_waiters"] >= 1, "the child to park in send")
    os.kill(child.pid, signal.SIGINT)
    child.expect("INTERRUPTED")
    got = [sub.recv(timeout=20) for _ in range(n)]
    assert got == [b"fill"] * n
    assert sub.recv(timeout=20) == b"after"  # not b"blocked": nothing half-sent
    child.expect("SENT")
    assert child.wait() == 0
    sub.close()


PUB_LOAN_OPEN = """
import sys, time, shmbus
publ = shmbus.Publisher(sys.argv[1], dir=sys.argv[2], create=False)
publ.send(b"before")
loan = publ.loan(32)
loan.view[:5] = b"never"
print("LOANED", flush=True)
time.sleep(600)  # killed with the loan open: a claim that is never committed
"""


def test_publisher_killed_with_an_open_loan_does_not_wedge_subscribers(busdir, spawn):
    """A Python publisher SIGKILLed between loan() and commit() leaves a hole;
    the Python subscriber gets the message before it, then, once the hole is
    repaired, the next message of another publisher; never the loan's bytes."""
    sub = shmbus.Subscriber("loankill", dir=busdir)
    child = spawn(python_child(PUB_LOAN_OPEN, "loankill", busdir))
    child.expect("LOANED")
    assert sub.recv(timeout=20) == b"before"
    child.kill(signal.SIGKILL)
    with shmbus.Publisher("loankill", dir=busdir) as publ:
        publ.send(b"after the hole")
        assert sub.recv(timeout=20) == b"after the hole"
    sub.close()
