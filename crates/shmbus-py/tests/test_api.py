"""The Python API within one process: errors, views, context managers,
iteration, admin calls."""

from __future__ import annotations

import array
import os
import threading

import pytest

import shmbus


def test_send_accepts_any_buffer(busdir):
    with shmbus.Subscriber("buf", dir=busdir) as sub, shmbus.Publisher("buf", dir=busdir) as publ:
        for data in [b"bytes", bytearray(b"bytearray"), memoryview(b"--memoryview--")[2:-2], array.array("i", [1, 2, 3])]:
            publ.send(data)
            assert sub.recv(timeout=5) == bytes(data)
        publ.send(b"")
        assert sub.recv(timeout=5) == b""
        with pytest.raises(TypeError):
            publ.send("str is not bytes")


def test_errors_carry_the_rust_messages(busdir):
    with shmbus.Publisher("small", dir=busdir, capacity=4096, max_message=64) as publ:
        with pytest.raises(shmbus.TooLarge) as e:
            publ.send(b"x" * 65)
        assert str(e.value) == "message of 65 bytes is larger than the bus's max_message of 64 bytes"
        assert isinstance(e.value, ValueError) and isinstance(e.value, shmbus.Error)
    with pytest.raises(shmbus.InvalidName) as e:
        shmbus.Publisher("../etc", dir=busdir)
    assert "invalid bus name" in str(e.value)
    with pytest.raises(shmbus.InvalidConfig) as e:
        shmbus.Publisher("cfg", dir=busdir, capacity=1000)
    assert str(e.value).startswith("invalid bus configuration: capacity 1000 is not a power of two")
    with pytest.raises(shmbus.InvalidConfig):
        shmbus.Publisher("cfg", dir=busdir, overflow="sometimes")
    with pytest.raises(shmbus.NotFound) as e:
        shmbus.Subscriber("absent", dir=busdir, create=False)
    assert isinstance(e.value, FileNotFoundError)
    assert "bus 'absent' does not exist" in str(e.value)


def test_explicit_settings_must_match_an_existing_bus(busdir):
    with shmbus.Publisher("m", dir=busdir, capacity=8192, overflow="overwrite"):
        with shmbus.Subscriber("m", dir=busdir) as sub:  # no settings: attaches whatever it is
            assert sub.info["capacity"] == 8192 and sub.info["overflow"] == "overwrite"
        with pytest.raises(shmbus.Incompatible) as e:
            shmbus.Subscriber("m", dir=busdir, overflow="block")
        assert "exists with overflow overwrite, but block was requested" in str(e.value)


def test_full_and_timeout_in_block_mode(busdir):
    with shmbus.Subscriber("full", dir=busdir, capacity=4096) as sub, shmbus.Publisher("full", dir=busdir) as publ:
        with pytest.raises(shmbus.Full):
            for _ in range(1000):
                publ.try_send(b"z" * 200)
        with pytest.raises(shmbus.Timeout) as e:
            publ.send(b"z" * 200, timeout=0.05)
        assert isinstance(e.value, TimeoutError)
        assert str(e.value) == "timed out waiting for space on the bus"
        with pytest.raises(shmbus.Full):
            publ.try_loan(200)
        assert sub.recv(timeout=5) == b"z" * 200
        publ.send(b"z" * 200, timeout=5)  # room again


def test_lagged_carries_lost(busdir):
    with shmbus.Subscriber("lag", dir=busdir, capacity=4096, overflow="overwrite") as sub, shmbus.Publisher(
        "lag", dir=busdir
    ) as publ:
        for i in range(500):
            publ.send(i.to_bytes(8, "little") * 8)
        with pytest.raises(shmbus.Lagged) as e:
            sub.recv(timeout=5)
        assert e.value.lost > 0
        assert str(e.value) == (
            f"subscriber was overrun and lost {e.value.lost} messages; continuing with the oldest intact one"
        )
        first = int.from_bytes(sub.recv(timeout=5)[:8], "little")
        assert first == e.value.lost  # exactly the messages before it were lost
        assert sub.lost == e.value.lost


def test_loan_view_is_released_on_commit(busdir):
    with shmbus.Subscriber("loan", dir=busdir) as sub, shmbus.Publisher("loan", dir=busdir) as publ:
        loan = publ.loan(16)
        view = loan.view
        assert not view.readonly and len(view) == 16
        view[:] = b"0123456789abcdef"
        with pytest.raises(BufferError):  # one loan at a time
            publ.send(b"meanwhile")
        part = view[4:8]
        with pytest.raises(BufferError):
            loan.commit()  # refused while a slice of the view is alive
        assert loan.open
        del part
        loan.commit()
        assert not loan.open
        with pytest.raises(ValueError):
            view[0]  # released: raises, never reads the ring
        with pytest.raises(BufferError):
            loan.commit()
        assert sub.recv(timeout=5) == b"0123456789abcdef"
        publ.send(b"after")  # the publisher is back
        assert sub.recv(timeout=5) == b"after"


def test_loan_context_manager_commits_or_aborts(busdir):
    with shmbus.Subscriber("loancm", dir=busdir) as sub, shmbus.Publisher("loancm", dir=busdir) as publ:
        with publ.loan(3) as v:
            v[:] = b"abc"
        with pytest.raises(ValueError):
            bytes(v)
        with pytest.raises(RuntimeError):
            with publ.loan(3) as v:
                v[:] = b"xyz"
                raise RuntimeError("abandon")
        loan = publ.loan(4)
        loan.view[:] = b"gone"
        del loan  # garbage-collected open: aborted
        publ.send(b"end")
        assert [sub.recv(timeout=5), sub.recv(timeout=5)] == [b"abc", b"end"]
        assert sub.try_recv() is None


def test_message_ref_is_read_only_and_released(busdir):
    with shmbus.Subscriber("ref", dir=busdir) as sub, shmbus.Publisher("ref", dir=busdir) as publ:
        publ.send(b"in place")
        publ.send(b"next")
        with sub.recv_ref(timeout=5) as view:
            assert view.readonly
            assert bytes(view) == b"in place"
            with pytest.raises(TypeError):
                view[0] = 1
            with pytest.raises(BufferError):
                sub.recv(timeout=0)  # the subscriber is lent to the MessageRef
        with pytest.raises(ValueError):
            view[0]
        ref = sub.recv_ref(timeout=5)
        ref.view.release()  # the caller may release the view itself: `view` gives a new one
        assert ref.seq == 1 and len(ref) == 4 and bytes(ref) == b"next" and ref.view.tobytes() == b"next"
        ref.release()
        ref.release()  # idempotent
        with pytest.raises(BufferError):
            memoryview(shmbus.BufferWindow())  # a window nobody opened exports nothing


def test_iteration_and_last_seq(busdir):
    with shmbus.Subscriber("it", dir=busdir) as sub, shmbus.Publisher("it", dir=busdir) as publ:
        for i in range(5):
            publ.send(str(i).encode())
        got = []
        for msg in sub:
            got.append(msg)
            if len(got) == 5:
                break
        assert got == [b"0", b"1", b"2", b"3", b"4"]
        assert sub.last_seq == 4


def test_recv_releases_the_gil(busdir):
    """Another Python thread runs while recv() waits, and its send wakes it."""
    with shmbus.Subscriber("gil", dir=busdir) as sub, shmbus.Publisher("gil", dir=busdir) as publ:
        t = threading.Timer(0.2, lambda: publ.send(b"from a thread"))
        t.start()
        assert sub.recv(timeout=20) == b"from a thread"
        t.join()


def test_context_managers_detach(busdir):
    with shmbus.Publisher("cm", dir=busdir, persistent=True) as publ:
        with shmbus.Subscriber("cm", dir=busdir) as sub:
            st = shmbus.inspect("cm", dir=busdir)
            assert (st["live_publishers"], st["live_subscribers"]) == (1, 1)
        assert sub.closed
        with pytest.raises(shmbus.Closed):
            sub.recv(timeout=0)
        assert shmbus.inspect("cm", dir=busdir)["live_subscribers"] == 0
    assert publ.closed
    assert shmbus.inspect("cm", dir=busdir)["stale"] is True


def test_admin_calls_return_plain_objects(busdir):
    assert shmbus.list(dir=busdir) == []
    with shmbus.Publisher("a1", dir=busdir, persistent=True), shmbus.Subscriber("a2", dir=busdir):
        st = shmbus.inspect("a1", dir=busdir)
        assert type(st) is dict and st["name"] == "a1" and st["path"].endswith("a1.bus")
        assert st["peers"][0]["kind"] == "publisher" and st["peers"][0]["pid"] == os.getpid()
        names = [b["name"] for b in shmbus.list(dir=busdir)]
        assert names == ["a1", "a2"]
        with pytest.raises(shmbus.InUse):
            shmbus.remove("a2", dir=busdir)
    assert shmbus.gc(dir=busdir) == []  # a1 is persistent; a2 left with its last peer
    path = shmbus.remove("a1", dir=busdir)
    assert isinstance(path, str) and not os.path.exists(path)
    assert shmbus.list(dir=busdir) == []


def test_batches_keep_order_and_count(busdir):
    with shmbus.Subscriber("batch", dir=busdir, capacity=1 << 16) as sub, shmbus.Publisher(
        "batch", dir=busdir, capacity=1 << 16
    ) as publ:
        msgs = [i.to_bytes(4, "little") * (1 + i % 7) for i in range(5000)]
        got = []

        def drain():
            while len(got) < len(msgs):
                got.extend(sub.recv_batch(256, timeout=10))

        t = threading.Thread(target=drain)
        t.start()
        publ.send_batch(msgs)
        t.join(timeout=30)
        assert got == msgs
        publ.send_batch([bytearray(b"a"), memoryview(b"bc")])
        assert sub.recv_batch(timeout=5) == [b"a", b"bc"]
        assert sub.last_seq == len(msgs) + 1
        with pytest.raises(shmbus.Timeout):
            sub.recv_batch(timeout=0.01)
        assert sub.recv_batch(0, timeout=0.01) == []
