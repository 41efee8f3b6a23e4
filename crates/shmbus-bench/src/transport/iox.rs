//! iceoryx2 publish-subscribe (crates.io `iceoryx2`, `ipc::Service`), the
//! receiver busy-polling `receive()`.
//!
//! To compare like with like, a sender copies the message into a loaned
//! slice (`loan_slice_uninit` + `write_from_slice`, as shmbus's `send` copies
//! into the ring), a stream receiver copies it out (as `recv_into`), and the
//! echoing side of a ping-pong sends straight from the received sample (as
//! shmbus's `recv_ref` + `send`). Services are lossless
//! (`enable_safe_overflow(false)`, `RetryUntilDelivered`) and buffer about
//! 1 MiB of messages (at least 16), like a shmbus bus here.

use iceoryx2::port::publisher::Publisher;
use iceoryx2::port::subscriber::Subscriber;
use iceoryx2::prelude::*;
use iceoryx2::service::port_factory::publish_subscribe::PortFactory;

use super::{header, run_role, spin_until, Link, Res, Rx, Tx};
use crate::spec::{ChildResult, ChildSpec, Pattern};

type Pub = Publisher<ipc::Service, [u8], ()>;
type Sub = Subscriber<ipc::Service, [u8], ()>;
type Svc = PortFactory<ipc::Service, [u8], ()>;

fn err(e: impl std::fmt::Debug) -> Box<dyn std::error::Error + Send + Sync> {
    format!("iceoryx2: {e:?}").into()
}

/// Messages a subscriber buffers: one in a ping-pong (as iceoryx2's own
/// benchmark), else about 1 MiB, at least 16.
fn buffer(spec: &ChildSpec) -> usize {
    if spec.pattern == Pattern::Pingpong {
        1
    } else {
        ((1usize << 20) / spec.size.max(1)).max(16)
    }
}

fn node() -> Res<Node<ipc::Service>> {
    set_log_level(LogLevel::Error);
    NodeBuilder::new().create::<ipc::Service>().map_err(err)
}

fn service(node: &Node<ipc::Service>, spec: &ChildSpec, which: &str) -> Res<Svc> {
    let name = format!("shmbus-bench/{}/{which}", spec.tag);
    let name = ServiceName::new(&name).map_err(err)?;
    node.service_builder(&name)
        .publish_subscribe::<[u8]>()
        .max_publishers(2)
        .max_subscribers(4)
        .history_size(0)
        .subscriber_max_buffer_size(buffer(spec))
        .enable_safe_overflow(false)
        .open_or_create()
        .map_err(err)
}

fn publisher(svc: &Svc, spec: &ChildSpec) -> Res<Pub> {
    svc.publisher_builder()
        .initial_max_slice_len(spec.size)
        .max_loaned_samples(2)
        .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
        .create()
        .map_err(err)
}

fn subscriber(svc: &Svc, spec: &ChildSpec) -> Res<Sub> {
    svc.subscriber_builder().buffer_size(buffer(spec)).create().map_err(err)
}

fn send(publ: &Pub, msg: &[u8]) -> Res<()> {
    let sample = publ.loan_slice_uninit(msg.len()).map_err(err)?;
    sample.write_from_slice(msg).send().map_err(err)?;
    Ok(())
}

/// Busy-polls for the next sample.
fn receive(sub: &Sub) -> Res<iceoryx2::sample::Sample<ipc::Service, [u8], ()>> {
    let mut got = None;
    let mut failure = None;
    spin_until(|| match sub.receive() {
        Ok(Some(s)) => {
            got = Some(s);
            true
        }
        Ok(None) => false,
        Err(e) => {
            failure = Some(err(e));
            true
        }
    })?;
    match (got, failure) {
        (Some(s), _) => Ok(s),
        (None, Some(e)) => Err(e),
        (None, None) => Err("iceoryx2: no sample".into()),
    }
}

/// One end of a ping-pong over two services.
pub struct IoxLink {
    publ: Pub,
    sub: Sub,
    _services: (Svc, Svc),
    _node: Node<ipc::Service>,
}

impl IoxLink {
    fn new(spec: &ChildSpec, server: bool) -> Res<IoxLink> {
        let node = node()?;
        let ping = service(&node, spec, "ping")?;
        let pong = service(&node, spec, "pong")?;
        let (to, from) = if server { (&pong, &ping) } else { (&ping, &pong) };
        let sub = subscriber(from, spec)?;
        let publ = publisher(to, spec)?;
        Ok(IoxLink { publ, sub, _services: (ping, pong), _node: node })
    }
}

impl Link for IoxLink {
    fn send(&mut self, msg: &[u8]) -> Res<()> {
        send(&self.publ, msg)
    }

    fn recv_seq(&mut self) -> Res<u64> {
        let s = receive(&self.sub)?;
        Ok(header(s.payload())?.0)
    }

    fn echo(&mut self) -> Res<u64> {
        let s = receive(&self.sub)?;
        let seq = header(s.payload())?.0;
        send(&self.publ, s.payload())?;
        Ok(seq)
    }
}

/// A stream's receiving end.
pub struct IoxRx {
    sub: Sub,
    buf: Vec<u8>,
    _service: Svc,
    _node: Node<ipc::Service>,
}

impl Rx for IoxRx {
    fn recv(&mut self) -> Res<(u64, u8)> {
        let s = receive(&self.sub)?;
        self.buf.clear();
        self.buf.extend_from_slice(s.payload());
        header(&self.buf)
    }
}

/// A stream's sending end.
pub struct IoxTx {
    publ: Pub,
    _service: Svc,
    _node: Node<ipc::Service>,
}

impl Tx for IoxTx {
    fn send(&mut self, msg: &[u8]) -> Res<()> {
        send(&self.publ, msg)
    }
}

/// Runs a child of an iceoryx2 case.
pub fn run(spec: &ChildSpec, ready: &mut dyn FnMut(&str)) -> Res<ChildResult> {
    run_role(
        spec,
        ready,
        |spec, ready| {
            let l = IoxLink::new(spec, true)?;
            ready("");
            Ok(l)
        },
        |spec| IoxLink::new(spec, false),
        |spec, ready| {
            let node = node()?;
            let svc = service(&node, spec, "stream")?;
            let sub = subscriber(&svc, spec)?;
            ready("");
            Ok(IoxRx { sub, buf: Vec::with_capacity(spec.size), _service: svc, _node: node })
        },
        |spec| {
            let node = node()?;
            let svc = service(&node, spec, "stream")?;
            let publ = publisher(&svc, spec)?;
            Ok(IoxTx { publ, _service: svc, _node: node })
        },
    )
}
