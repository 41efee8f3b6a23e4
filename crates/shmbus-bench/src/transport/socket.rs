//! Kernel transports, set up as an engineer would for speed: Unix domain
//! sockets (stream and seqpacket), TCP over 127.0.0.1 with `TCP_NODELAY`,
//! and pipes (a FIFO per direction). Every socket's send and receive buffers
//! and every pipe are sized like a shmbus ring ([`sys::KERNEL_BUFFER`], 1
//! MiB). One `write` per message; a receiver reads each message straight
//! into its buffer with `read_exact` (no user-space buffer in front, so no
//! extra copy), a seqpacket receiver one record per `recv`.
//!
//! `uds-stream-poll` is the stream socket made non-blocking, both sides
//! spinning on `EAGAIN` instead of sleeping in the kernel: the like of a
//! busy-spinning shmbus subscriber.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Instant;

use super::{header, run_role, Link, Res, Rx, Tx, PEER_TIMEOUT};
use crate::spec::{ChildResult, ChildSpec, Transport};
use crate::sys;

/// A non-blocking stream whose `read` and `write` spin on `EAGAIN` until
/// they move at least one byte (busy-polling), giving up after
/// [`PEER_TIMEOUT`] of nothing.
pub struct Polled<S>(S);

impl<S> Polled<S> {
    fn spin<T>(mut op: impl FnMut() -> io::Result<T>) -> io::Result<T> {
        let mut spins = 0u32;
        let mut since: Option<Instant> = None;
        loop {
            match op() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::hint::spin_loop();
                    spins = spins.wrapping_add(1);
                    if spins.is_multiple_of(1 << 16) && since.get_or_insert_with(Instant::now).elapsed() > PEER_TIMEOUT
                    {
                        return Err(io::Error::new(io::ErrorKind::TimedOut, "peer silent"));
                    }
                }
                r => return r,
            }
        }
    }
}

impl<S: Read> Read for Polled<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Self::spin(|| self.0.read(buf))
    }
}

impl<S: Write> Write for Polled<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Self::spin(|| self.0.write(buf))
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// One end of a ping-pong over a byte stream (fixed-size messages: no framing needed).
pub struct StreamLink<R, W> {
    r: R,
    w: W,
    buf: Vec<u8>,
}

impl<R: Read, W: Write> Link for StreamLink<R, W> {
    fn send(&mut self, msg: &[u8]) -> Res<()> {
        self.w.write_all(msg)?;
        Ok(())
    }

    fn recv_seq(&mut self) -> Res<u64> {
        self.r.read_exact(&mut self.buf)?;
        Ok(header(&self.buf)?.0)
    }

    fn echo(&mut self) -> Res<u64> {
        self.r.read_exact(&mut self.buf)?;
        self.w.write_all(&self.buf)?;
        Ok(header(&self.buf)?.0)
    }
}

/// A stream's receiving end over a byte stream: each message is read
/// straight into `buf` (the one copy out of the kernel).
pub struct StreamRx<R> {
    r: R,
    buf: Vec<u8>,
}

impl<R: Read> Rx for StreamRx<R> {
    fn recv(&mut self) -> Res<(u64, u8)> {
        self.r.read_exact(&mut self.buf)?;
        header(&self.buf)
    }
}

/// A stream's sending end over a byte stream.
pub struct StreamTx<W>(W);

impl<W: Write> Tx for StreamTx<W> {
    fn send(&mut self, msg: &[u8]) -> Res<()> {
        self.0.write_all(msg)?;
        Ok(())
    }
}

/// A connected `SOCK_SEQPACKET` socket: one record per message.
pub struct SeqPacket {
    fd: OwnedFd,
    buf: Vec<u8>,
}

impl SeqPacket {
    fn recv(&mut self) -> Res<()> {
        let want = self.buf.len();
        // One byte more than expected, to notice a longer record.
        self.buf.push(0);
        let n = sys::seqpacket_recv(&self.fd, &mut self.buf)?;
        self.buf.truncate(want);
        if n != want {
            return Err(format!("seqpacket record of {n} bytes, expected {want}").into());
        }
        Ok(())
    }
}

impl Link for SeqPacket {
    fn send(&mut self, msg: &[u8]) -> Res<()> {
        Ok(sys::seqpacket_send(&self.fd, msg)?)
    }

    fn recv_seq(&mut self) -> Res<u64> {
        SeqPacket::recv(self)?;
        Ok(header(&self.buf)?.0)
    }

    fn echo(&mut self) -> Res<u64> {
        SeqPacket::recv(self)?;
        sys::seqpacket_send(&self.fd, &self.buf)?;
        Ok(header(&self.buf)?.0)
    }
}

impl Rx for SeqPacket {
    fn recv(&mut self) -> Res<(u64, u8)> {
        SeqPacket::recv(self)?;
        header(&self.buf)
    }
}

impl Tx for SeqPacket {
    fn send(&mut self, msg: &[u8]) -> Res<()> {
        Ok(sys::seqpacket_send(&self.fd, msg)?)
    }
}

/// A connected duplex channel of one of the kernel transports.
enum Conn {
    Unix(UnixStream),
    /// A non-blocking Unix stream socket, busy-polled.
    UnixPoll(UnixStream),
    Tcp(TcpStream),
    Seq(OwnedFd),
    /// (read end, write end)
    Pipe(File, File),
}

fn sock_path(spec: &ChildSpec) -> std::path::PathBuf {
    spec.dir.join("bench.sock")
}

/// Server side: listen, say READY (with the TCP port), accept.
fn accept(spec: &ChildSpec, ready: &mut dyn FnMut(&str)) -> Res<Conn> {
    let conn = match spec.transport {
        Transport::UdsStream | Transport::UdsStreamPoll => {
            let l = UnixListener::bind(sock_path(spec))?;
            ready("");
            Conn::Unix(l.accept()?.0)
        }
        Transport::UdsSeqpacket => {
            let l = sys::seqpacket_listen(&sock_path(spec))?;
            ready("");
            Conn::Seq(sys::accept(&l)?)
        }
        Transport::Tcp => {
            let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
            ready(&l.local_addr()?.port().to_string());
            let (s, _) = l.accept()?;
            s.set_nodelay(true)?;
            Conn::Tcp(s)
        }
        Transport::Pipe => {
            let (a2b, b2a) = (spec.dir.join("a2b.fifo"), spec.dir.join("b2a.fifo"));
            sys::mkfifo(&a2b)?;
            sys::mkfifo(&b2a)?;
            let conn = Conn::Pipe(sys::open_fifo(&a2b)?, sys::open_fifo(&b2a)?);
            // Sized before the client opens them: both ends see 1 MiB.
            if let Conn::Pipe(r, w) = &conn {
                sys::set_pipe_size(r, sys::KERNEL_BUFFER)?;
                sys::set_pipe_size(w, sys::KERNEL_BUFFER)?;
            }
            ready("");
            conn
        }
        other => return Err(format!("{other} is not a socket transport").into()),
    };
    tune(spec, conn)
}

/// Socket buffers sized like the ring; the polling variant made non-blocking.
fn tune(spec: &ChildSpec, conn: Conn) -> Res<Conn> {
    Ok(match conn {
        Conn::Unix(s) => {
            sys::set_socket_buffers(&s, sys::KERNEL_BUFFER)?;
            if spec.transport == Transport::UdsStreamPoll {
                s.set_nonblocking(true)?;
                Conn::UnixPoll(s)
            } else {
                Conn::Unix(s)
            }
        }
        Conn::Tcp(s) => {
            sys::set_socket_buffers(&s, sys::KERNEL_BUFFER)?;
            Conn::Tcp(s)
        }
        Conn::Seq(fd) => {
            sys::set_socket_buffers(&fd, sys::KERNEL_BUFFER)?;
            Conn::Seq(fd)
        }
        other => other,
    })
}

/// Client side: connect to what the server announced.
fn connect(spec: &ChildSpec) -> Res<Conn> {
    let conn = match spec.transport {
        Transport::UdsStream | Transport::UdsStreamPoll => Conn::Unix(UnixStream::connect(sock_path(spec))?),
        Transport::UdsSeqpacket => Conn::Seq(sys::seqpacket_connect(&sock_path(spec))?),
        Transport::Tcp => {
            let port: u16 =
                spec.peer.as_deref().unwrap_or_default().parse().map_err(|_| "no TCP port from the server")?;
            let s = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
            s.set_nodelay(true)?;
            Conn::Tcp(s)
        }
        Transport::Pipe => {
            // The client writes a2b and reads b2a.
            let (a2b, b2a) = (spec.dir.join("a2b.fifo"), spec.dir.join("b2a.fifo"));
            Conn::Pipe(sys::open_fifo(&b2a)?, sys::open_fifo(&a2b)?)
        }
        other => return Err(format!("{other} is not a socket transport").into()),
    };
    tune(spec, conn)
}

/// A ping-pong link over any connection (boxed halves keep one type).
type AnyLink = Box<dyn Link>;

fn link(conn: Conn, size: usize) -> Res<AnyLink> {
    let buf = vec![0u8; size];
    Ok(match conn {
        Conn::Unix(s) => Box::new(StreamLink { r: s.try_clone()?, w: s, buf }),
        Conn::UnixPoll(s) => Box::new(StreamLink { r: Polled(s.try_clone()?), w: Polled(s), buf }),
        Conn::Tcp(s) => Box::new(StreamLink { r: s.try_clone()?, w: s, buf }),
        Conn::Seq(fd) => Box::new(SeqPacket { fd, buf }),
        Conn::Pipe(r, w) => Box::new(StreamLink { r, w, buf }),
    })
}

impl Link for AnyLink {
    fn send(&mut self, msg: &[u8]) -> Res<()> {
        (**self).send(msg)
    }
    fn recv_seq(&mut self) -> Res<u64> {
        (**self).recv_seq()
    }
    fn echo(&mut self) -> Res<u64> {
        (**self).echo()
    }
}

impl Rx for Box<dyn Rx> {
    fn recv(&mut self) -> Res<(u64, u8)> {
        (**self).recv()
    }
}

impl Tx for Box<dyn Tx> {
    fn send(&mut self, msg: &[u8]) -> Res<()> {
        (**self).send(msg)
    }
}

fn rx(conn: Conn, size: usize) -> Box<dyn Rx> {
    let buf = vec![0u8; size];
    match conn {
        Conn::Unix(s) => Box::new(StreamRx { r: s, buf }),
        Conn::UnixPoll(s) => Box::new(StreamRx { r: Polled(s), buf }),
        Conn::Tcp(s) => Box::new(StreamRx { r: s, buf }),
        Conn::Seq(fd) => Box::new(SeqPacket { fd, buf }),
        Conn::Pipe(r, _) => Box::new(StreamRx { r, buf }),
    }
}

fn tx(conn: Conn) -> Box<dyn Tx> {
    match conn {
        Conn::Unix(s) => Box::new(StreamTx(s)),
        Conn::UnixPoll(s) => Box::new(StreamTx(Polled(s))),
        Conn::Tcp(s) => Box::new(StreamTx(s)),
        Conn::Seq(fd) => Box::new(SeqPacket { fd, buf: Vec::new() }),
        Conn::Pipe(_, w) => Box::new(StreamTx(w)),
    }
}

/// Runs a child of a kernel-transport case.
pub fn run(spec: &ChildSpec, ready: &mut dyn FnMut(&str)) -> Res<ChildResult> {
    run_role(
        spec,
        ready,
        |spec, ready| link(accept(spec, ready)?, spec.size),
        |spec| link(connect(spec)?, spec.size),
        |spec, ready| Ok(rx(accept(spec, ready)?, spec.size)),
        |spec| Ok(tx(connect(spec)?)),
    )
}
