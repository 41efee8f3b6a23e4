#!/usr/bin/env python3
"""Python-to-Python transport benchmark: shmbus against multiprocessing.Pipe,
multiprocessing.shared_memory with a lock (semaphore) handoff, and a Unix
domain stream socket, between the same two processes, in one run.

For each transport and message size (64 B and 64 KiB by default):
- one-way latency: the sender stamps CLOCK_MONOTONIC (time.monotonic_ns,
  comparable between processes) into the first 8 bytes and sends one message
  after each sleep of --interval-us microseconds; the receiver subtracts the
  stamp from its clock once the message is a Python object. p50/p99/p99.9
  over --lat-count messages after a 5 % warm-up.
- throughput: the sender sends --thr-count messages as fast as it can, the
  receiver receives every one as a Python object; msgs/s from the sender's
  first send to the receiver's last receive.

Every receiver returns a new bytes object per message (shmbus recv(),
Pipe recv_bytes(), bytes() of the shared buffer, socket recv(MSG_WAITALL)),
so every row pays the same one copy into a Python object.

The sender is pinned to CPU 0 and the receiver to CPU 1 (--no-pin to
let the scheduler place them), the same placement for every transport.

Usage: python bench.py [--sizes 64,65536] [--lat-count N] [--thr-count N] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import socket
import statistics
import struct
import sys
import tempfile
import time
from array import array
from multiprocessing import shared_memory

import shmbus

CTX = mp.get_context("fork")
STAMP = struct.Struct("<q")


# ------------------------------------------------------------- transports
# Each: __init__ (before the fork: what both processes inherit),
# rx_open() in the receiver, tx_open() in the sender, close() in the parent.


class Shmbus:
    def __init__(self, size: int, wait: str) -> None:
        self.name = f"bench{os.getpid()}"
        self.dir = tempfile.mkdtemp(prefix="shmbus-bench-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
        self.wait = wait
        self.max_message = max(size, 64)
        self.label = f"shmbus ({wait})"

    def rx_open(self):
        # The receiver creates the bus (block mode: lossless) before the sender attaches.
        self.sub = shmbus.Subscriber(
            self.name, dir=self.dir, capacity=4 << 20, max_message=max(self.max_message, 65536), wait=self.wait
        )
        return self.sub.recv

    def tx_open(self):
        self.pub = shmbus.Publisher(self.name, dir=self.dir, create=False, wait=self.wait)
        return self.pub.send

    def close(self) -> None:
        if hasattr(self, "pub"):
            self.pub.close()
        for f in os.listdir(self.dir):
            os.remove(os.path.join(self.dir, f))
        os.rmdir(self.dir)


class Pipe:
    label = "multiprocessing.Pipe"

    def __init__(self, size: int) -> None:
        self.r, self.w = CTX.Pipe(duplex=False)

    def rx_open(self):
        return self.r.recv_bytes

    def tx_open(self):
        return self.w.send_bytes

    def close(self) -> None:
        self.r.close()
        self.w.close()


class SharedMemoryLock:
    """One slot in a SharedMemory segment, handed over with two semaphores."""

    label = "shared_memory + lock handoff"

    def __init__(self, size: int) -> None:
        self.shm = shared_memory.SharedMemory(create=True, size=size + 8)
        self.empty = CTX.Semaphore(1)
        self.full = CTX.Semaphore(0)

    def rx_open(self):
        buf, empty, full = self.shm.buf, self.empty, self.full

        def recv() -> bytes:
            full.acquire()
            (n,) = STAMP.unpack_from(buf, 0)
            data = bytes(buf[8 : 8 + n])
            empty.release()
            return data

        return recv

    def tx_open(self):
        buf, empty, full = self.shm.buf, self.empty, self.full

        def send(data) -> None:
            n = len(data)
            empty.acquire()
            STAMP.pack_into(buf, 0, n)
            buf[8 : 8 + n] = data
            full.release()

        return send

    def close(self) -> None:
        self.shm.close()
        self.shm.unlink()


class UnixSocket:
    label = "Unix socket (stream)"

    def __init__(self, size: int) -> None:
        self.a, self.b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)

    def rx_open(self):
        s = self.b
        hdr = struct.Struct("<I")

        def recv() -> bytes:
            (n,) = hdr.unpack(s.recv(4, socket.MSG_WAITALL))
            return s.recv(n, socket.MSG_WAITALL)

        return recv

    def tx_open(self):
        s = self.a
        hdr = struct.Struct("<I")

        def send(data) -> None:
            s.sendmsg([hdr.pack(len(data)), data])

        return send

    def close(self) -> None:
        self.a.close()
        self.b.close()


def transports(size: int):
    return [
        Shmbus(size, "spin-then-park"),
        Shmbus(size, "busy-spin"),
        Pipe(size),
        SharedMemoryLock(size),
        UnixSocket(size),
    ]


# ------------------------------------------------------------- the two sides


def pin(cpu: int) -> None:
    """Same placement for every transport: sender on one CPU, receiver on another."""
    if PIN and hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {cpu})


PIN = True


def receiver(t, ctl, phase: str, count: int) -> None:
    pin(1)
    recv = t.rx_open()
    ctl.send("ready")
    if phase == "lat":
        lat = array("q")
        now = time.monotonic_ns
        for _ in range(count):
            m = recv()
            lat.append(now() - STAMP.unpack_from(m, 0)[0])
        ctl.send(lat.tobytes())
    else:
        for _ in range(count):
            recv()
        ctl.send(time.monotonic_ns())
    ctl.recv()  # stay attached until the parent is done


def run(t, phase: str, size: int, count: int, interval_ns: int):
    ctl, child_ctl = CTX.Pipe()
    p = CTX.Process(target=receiver, args=(t, child_ctl, phase, count), daemon=True)
    p.start()
    if not ctl.poll(30):
        raise RuntimeError(f"{t.label}: the receiver did not start")
    assert ctl.recv() == "ready"
    send = t.tx_open()
    payload = bytearray(size)
    try:
        if phase == "lat":
            now, sleep, gap = time.monotonic_ns, time.sleep, interval_ns / 1e9
            for _ in range(count):
                sleep(gap)  # sleep, not spin: on a 2-CPU machine the sender must leave a CPU to the receiver
                STAMP.pack_into(payload, 0, now())
                send(payload)
            if not ctl.poll(60):
                raise RuntimeError(f"{t.label}: the receiver did not finish")
            res = array("q")
            res.frombytes(ctl.recv())
            lat = sorted(res[len(res) // 20 :])
            q = lambda f: lat[min(len(lat) - 1, int(f * len(lat)))] / 1000.0  # noqa: E731
            return {"p50_us": q(0.50), "p99_us": q(0.99), "p999_us": q(0.999), "mean_us": statistics.fmean(lat) / 1000.0}
        t0 = time.monotonic_ns()
        for _ in range(count):
            send(payload)
        if not ctl.poll(120):
            raise RuntimeError(f"{t.label}: the receiver did not finish")
        t1 = ctl.recv()
        secs = (t1 - t0) / 1e9
        return {"msgs_per_s": count / secs, "mb_per_s": count * size / secs / 1e6}
    finally:
        ctl.send("done")
        p.join(30)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="64,65536")
    ap.add_argument("--lat-count", type=int, default=10000)
    ap.add_argument("--interval-us", type=int, default=200, help="sleep between latency samples")
    ap.add_argument("--thr-count", type=int, default=0, help="default: 200000 for <= 1 KiB, 20000 above")
    ap.add_argument("--json")
    ap.add_argument("--no-pin", action="store_true", help="do not pin the sender to CPU 0 and the receiver to CPU 1")
    args = ap.parse_args()
    global PIN
    PIN = not args.no_pin
    pin(0)
    sizes = [int(s) for s in args.sizes.split(",")]
    print(
        f"# Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}, "
        f"{'sender on CPU 0, receiver on CPU 1' if PIN else 'not pinned'}",
        flush=True,
    )
    rows = []
    for size in sizes:
        thr_count = args.thr_count or (200_000 if size <= 1024 else 20_000)
        interval = args.interval_us * 1000
        for t in transports(size):
            try:
                lat = run(t, "lat", size, args.lat_count, interval)
                thr = run(t, "thr", size, thr_count, 0)
            finally:
                t.close()
            row = {"transport": t.label, "size": size, **lat, **thr}
            rows.append(row)
            print(
                f"{t.label:32} {size:>6} B  p50 {lat['p50_us']:8.1f} us  p99 {lat['p99_us']:8.1f} us  "
                f"p99.9 {lat['p999_us']:8.1f} us  {thr['msgs_per_s']:>11,.0f} msgs/s  {thr['mb_per_s']:>9,.1f} MB/s",
                flush=True,
            )
    print()
    for size in sizes:
        base = next(r for r in rows if r["size"] == size and r["transport"] == "multiprocessing.Pipe")
        for r in rows:
            if r["size"] == size and r["transport"].startswith("shmbus"):
                print(
                    f"{r['transport']:32} {size:>6} B: p50 {base['p50_us'] / r['p50_us']:5.1f}x lower than Pipe, "
                    f"throughput {r['msgs_per_s'] / base['msgs_per_s']:5.1f}x Pipe"
                )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"python": platform.python_version(), "cpus": os.cpu_count(), "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
