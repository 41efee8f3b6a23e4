"""The Rust `shmbus` command and the Python package on one bus, both ways,
in both overflow modes."""

from __future__ import annotations

import os
import re

import pytest

import shmbus
from conftest import parse_synthetic, synthetic, wait_for

N = 3000
SIZE = 64


@pytest.mark.parametrize("overflow", ["block", "overwrite"])
def test_rust_pub_to_python_sub(busdir, shmbus_bin, spawn, overflow):
    """Every message of `shmbus pub` reaches a Python subscriber intact and in
    order; in overwrite mode the subscriber is overrun on purpose (it reads
    only after the publisher exited) and every message is accounted for:
    received + the `lost` of every Lagged == published, exactly."""
    # 4 KiB ring: a few dozen 64-byte frames, so overwrite mode must lose some.
    sub = shmbus.Subscriber("interop", dir=busdir, capacity=4096, overflow=overflow, start="oldest")
    publ = spawn([shmbus_bin, "--dir", busdir, "pub", "interop", "--count", str(N), "--size", str(SIZE)])
    received, lagged, expected = 0, 0, 0
    pub_id = None
    last_bus_seq = None
    if overflow == "overwrite":
        publ.wait()  # overrun: read nothing until the publisher is done
    while received + lagged < N:
        try:
            msg = sub.recv(timeout=20)
        except shmbus.Lagged as e:
            assert e.lost > 0
            assert re.search(rf"lost {e.lost} messages", str(e))
            lagged += e.lost
            expected += e.lost
            last_bus_seq = None if last_bus_seq is None else last_bus_seq + e.lost
            continue
        pid, seq = parse_synthetic(msg)
        pub_id = pub_id if pub_id is not None else pid
        assert pid == pub_id
        assert seq == expected, "the publisher's sequence must advance exactly by what Lagged reported"
        if last_bus_seq is not None:
            assert sub.last_seq == last_bus_seq + 1
        last_bus_seq = sub.last_seq
        expected += 1
        received += 1
    publ.wait()
    assert received + lagged == N
    assert sub.lost == lagged
    if overflow == "block":
        assert lagged == 0 and received == N
    else:
        assert lagged > 0 and received > 0
    with pytest.raises(shmbus.Timeout):
        sub.recv(timeout=0.05)
    sub.close()


def _verify_line(out: str) -> dict:
    m = re.search(r"received=(\d+) lost=(\d+) corrupt=(\d+) reordered=(\d+) duplicated=(\d+)", out)
    assert m, f"no verify summary in {out!r}"
    return dict(zip(["received", "lost", "corrupt", "reordered", "duplicated"], map(int, m.groups())))


@pytest.mark.parametrize("overflow", ["block", "overwrite"])
def test_python_pub_to_rust_verify(busdir, shmbus_bin, spawn, overflow):
    """Synthetic messages from a Python publisher pass `shmbus sub --verify`:
    nothing corrupt, reordered or duplicated; block mode loses nothing;
    overwrite mode (a 4 KiB ring) accounts for every message as received or lost."""
    argv = [shmbus_bin, "--dir", busdir, "sub", "pyverify", "--verify", "--capacity", "4KiB", "--overflow", overflow]
    if overflow == "block":
        argv += ["--count", str(N), "--timeout", "20"]
    else:
        argv += ["--timeout", "1"]  # may be overrun: ends 1 s after the last message
    verify = spawn(argv)
    wait_for(lambda: os.path.exists(os.path.join(busdir, "pyverify.bus")), "the verifier's bus")
    wait_for(lambda: shmbus.inspect("pyverify", dir=busdir)["live_subscribers"] == 1, "the verifier to attach")
    pub_id = (os.getpid() << 32) | 0x5EED
    with shmbus.Publisher("pyverify", dir=busdir) as publ:
        assert publ.info["overflow"] == overflow
        for seq in range(N):
            publ.send(synthetic(pub_id, seq, SIZE), timeout=20)
        rc = verify.wait(check=False)
    out = "\n".join(list(iter_lines(verify)))
    summary = _verify_line(out)
    assert summary["corrupt"] == summary["reordered"] == summary["duplicated"] == 0, out
    if overflow == "block":
        assert rc == 0
        assert summary == {"received": N, "lost": 0, "corrupt": 0, "reordered": 0, "duplicated": 0}
    else:
        assert rc == 3  # ended by --timeout
        assert summary["received"] + summary["lost"] == N
        assert summary["received"] > 0


def iter_lines(child):
    while True:
        line = child.lines.get(timeout=20)
        if line is None:
            return
        yield line
