//! The message type tag: which payload type a bus carries.
//!
//! A handle may declare a [`MessageType`] ([`BusConfig::message_type`]). The
//! first typed handle to attach (publisher or subscriber, in either start
//! order) records it in the bus header; every later typed handle must declare
//! the same type or is refused at attach with [`Error::TypeMismatch`] naming
//! both. Untyped handles are never checked. The tag lasts as long as the bus
//! file (a persistent bus keeps it, so a replay decodes as what was sent);
//! so a second typed publisher declaring another type is refused, whether or
//! not the first one is still attached.
//!
//! The identity is one 64-bit word, taken with a single compare-and-swap from
//! 0, so two handles racing to declare different types cannot both win; the
//! winner then writes a description (name, size, alignment, schema) that is
//! used only in error messages. See docs/layout.md, "Message type tag".

use std::fmt;
use std::mem::offset_of;
use std::sync::atomic::Ordering;

use crate::bus::Bus;
use crate::config::BusConfig;
use crate::error::{Error, Result};
use crate::layout::HEADER_SIZE;
use crate::region::{Mem, Region};

/// The type-tag area of the header page: declared on its own, after every
/// other header field (the hints end at 2048). Only its offsets are used; the
/// bytes are reached through atomics and checked copies like the rest of the
/// mapping.
#[repr(C)]
#[allow(dead_code)] // a layout description: fields are reached by offset
pub struct TypeTagArea {
    /// 0: no type recorded; else the type's identity hash (never 0).
    pub id: u64,
    /// 1 once the fields below describe `id` (stored last, Release).
    pub described: u32,
    /// [`TypeKind`] as a number: 1 Pod, 2 serde, 3 other.
    pub kind: u32,
    /// Pod: `size_of`; otherwise 0.
    pub size: u32,
    /// Pod: `align_of`; otherwise 0.
    pub align: u32,
    /// A schema hash or version chosen by the declarer (0: none).
    pub schema: u64,
    /// Bytes of `name` in use (at most 64).
    pub name_len: u32,
    /// Reserved, 0.
    pub reserved: u32,
    /// The type's name, UTF-8, without a module path.
    pub name: [u8; TYPE_NAME_MAX],
}

/// Offset of the type-tag area in the header page.
pub const OFF_TYPE_TAG: usize = 2048;
/// Longest recorded type name, in bytes (longer names are cut for display;
/// the identity hash covers the whole name).
pub const TYPE_NAME_MAX: usize = 64;
const T_ID: usize = OFF_TYPE_TAG + offset_of!(TypeTagArea, id);
const T_DESCRIBED: usize = OFF_TYPE_TAG + offset_of!(TypeTagArea, described);
const T_KIND: usize = OFF_TYPE_TAG + offset_of!(TypeTagArea, kind);
const T_SIZE: usize = OFF_TYPE_TAG + offset_of!(TypeTagArea, size);
const T_ALIGN: usize = OFF_TYPE_TAG + offset_of!(TypeTagArea, align);
const T_SCHEMA: usize = OFF_TYPE_TAG + offset_of!(TypeTagArea, schema);
const T_NAME_LEN: usize = OFF_TYPE_TAG + offset_of!(TypeTagArea, name_len);
const T_NAME: usize = OFF_TYPE_TAG + offset_of!(TypeTagArea, name);

// The area's own consistency: the offsets docs/layout.md lists, after every
// other header field (the hints end at OFF_HINTS + HINTS * 8), inside the page.
const _: () = {
    assert!(crate::layout::OFF_HINTS + crate::layout::HINTS * 8 <= OFF_TYPE_TAG);
    assert!(OFF_TYPE_TAG.is_multiple_of(128) && OFF_TYPE_TAG + size_of::<TypeTagArea>() <= HEADER_SIZE);
    assert!(T_ID == 2048 && T_DESCRIBED == 2056 && T_KIND == 2060 && T_SIZE == 2064 && T_ALIGN == 2068);
    assert!(T_SCHEMA == 2072 && T_NAME_LEN == 2080 && T_NAME == 2088 && size_of::<TypeTagArea>() == 104);
};

/// The part of the layout description (hashed into the fingerprint) this area adds.
pub(crate) const LAYOUT_DESC: &str = ";typetag@2048:id0,described8,kind12,size16,align20,schema24,namelen32,name40x64";

/// How messages of a type are encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TypeKind {
    /// Plain old data sent as its bytes (`send_pod` / `recv_pod`).
    Pod,
    /// bincode 2 through serde (`send_serde` / `recv_serde`).
    Serde,
    /// Anything else the application defines.
    Other,
}

impl TypeKind {
    fn to_raw(self) -> u32 {
        match self {
            TypeKind::Pod => 1,
            TypeKind::Serde => 2,
            TypeKind::Other => 3,
        }
    }
    fn from_raw(v: u32) -> Option<Self> {
        match v {
            1 => Some(TypeKind::Pod),
            2 => Some(TypeKind::Serde),
            3 => Some(TypeKind::Other),
            _ => None,
        }
    }
}

/// The payload type a handle declares at attach (see the module docs of
/// `shmbus_core::typetag` and [`BusConfig::message_type`]).
///
/// A type is identified by its kind, its name without module path (so that
/// `sensor::Reading` and `logger::Reading`, one struct compiled into two
/// programs, agree), for Pod its size and alignment, and an optional schema
/// value. Serde types carry no layout the library can see: give a schema
/// hash or version with [`schema`](MessageType::schema) to tell two
/// same-named types apart.
///
/// ```
/// use shmbus::MessageType;
/// #[derive(Clone, Copy)]
/// #[repr(C)]
/// struct Reading { t: u64, celsius: f32, _pad: u32 }
/// let t = MessageType::pod::<Reading>();
/// assert_eq!(t.name(), "Reading");
/// assert_eq!(t.to_string(), "Reading (pod, 16 bytes, align 8)");
/// assert_ne!(t, MessageType::serde::<Reading>());
/// assert_eq!(MessageType::serde::<Vec<std::string::String>>().name(), "Vec<String>");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MessageType {
    name: String,
    kind: TypeKind,
    size: u32,
    align: u32,
    schema: u64,
}

impl MessageType {
    /// A plain-old-data type: its name, size and alignment.
    pub fn pod<T: Copy>() -> MessageType {
        MessageType {
            name: short_type_name(std::any::type_name::<T>()),
            kind: TypeKind::Pod,
            size: u32::try_from(size_of::<T>()).unwrap_or(u32::MAX),
            align: u32::try_from(align_of::<T>()).unwrap_or(u32::MAX),
            schema: 0,
        }
    }
    /// A serde type (sent with bincode): its name.
    pub fn serde<T: ?Sized>() -> MessageType {
        MessageType {
            name: short_type_name(std::any::type_name::<T>()),
            kind: TypeKind::Serde,
            size: 0,
            align: 0,
            schema: 0,
        }
    }
    /// A type of the application's own encoding, by name.
    ///
    /// ```
    /// use shmbus::MessageType;
    /// let v1 = MessageType::named("quote/protobuf").schema(1);
    /// assert_ne!(v1, MessageType::named("quote/protobuf").schema(2));
    /// assert_eq!(v1.to_string(), "quote/protobuf (named, schema 0x1)");
    /// ```
    pub fn named(name: impl Into<String>) -> MessageType {
        MessageType { name: name.into(), kind: TypeKind::Other, size: 0, align: 0, schema: 0 }
    }
    /// Adds a schema hash or version: types that differ in it do not match.
    pub fn schema(mut self, schema: u64) -> MessageType {
        self.schema = schema;
        self
    }
    /// The name (without module path).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The encoding.
    pub fn kind(&self) -> TypeKind {
        self.kind
    }
    /// Pod: the size in bytes; 0 otherwise.
    pub fn size(&self) -> u32 {
        self.size
    }
    /// Pod: the alignment; 0 otherwise.
    pub fn align(&self) -> u32 {
        self.align
    }
    /// The schema value (0: none).
    pub fn schema_hash(&self) -> u64 {
        self.schema
    }

    /// The identity recorded in the bus: FNV-1a 64 over every field, never 0.
    pub fn id(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |bytes: &[u8]| {
            for &b in bytes {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        };
        eat(&self.kind.to_raw().to_le_bytes());
        eat(&self.size.to_le_bytes());
        eat(&self.align.to_le_bytes());
        eat(&self.schema.to_le_bytes());
        eat(&(self.name.len() as u64).to_le_bytes());
        eat(self.name.as_bytes());
        h.max(1)
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            TypeKind::Pod => write!(f, "{} (pod, {} bytes, align {}", self.name, self.size, self.align)?,
            TypeKind::Serde => write!(f, "{} (serde", self.name)?,
            TypeKind::Other => write!(f, "{} (named", self.name)?,
        }
        if self.schema != 0 {
            write!(f, ", schema {:#x}", self.schema)?;
        }
        f.write_str(")")
    }
}

/// `a::b::Reading<c::D>` -> `Reading<D>`: every path keeps its last segment.
fn short_type_name(full: &str) -> String {
    let mut out = String::with_capacity(full.len());
    let mut segment = String::new();
    let mut chars = full.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ':' && chars.peek() == Some(&':') {
            chars.next();
            segment.clear();
        } else if c.is_alphanumeric() || c == '_' {
            segment.push(c);
        } else {
            out.push_str(&segment);
            segment.clear();
            out.push(c);
        }
    }
    out.push_str(&segment);
    out
}

impl BusConfig {
    /// Declares the payload type of handles opened with this config: the
    /// first typed handle records it in the bus, later typed handles must
    /// declare the same type or attaching fails with [`Error::TypeMismatch`].
    /// Without it (the default) a handle is untyped and never checked.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use shmbus::{BusConfig, Error, MessageType, Publisher, StartAt, Subscriber};
    /// # let dir = tempfile::tempdir()?;
    /// let cfg = BusConfig::default().dir(dir.path());
    /// let _p = Publisher::open_or_create("temps", &cfg.clone().message_type(MessageType::pod::<f64>()))?;
    /// let other = cfg.clone().message_type(MessageType::pod::<u32>());
    /// let err = Subscriber::attach("temps", &other, StartAt::Latest).unwrap_err();
    /// assert!(matches!(err, Error::TypeMismatch { .. }));
    /// let _untyped = Subscriber::attach("temps", &cfg, StartAt::Latest)?;
    /// # Ok(()) }
    /// ```
    pub fn message_type(mut self, t: MessageType) -> Self {
        self.message_type = Some(t);
        self
    }
    /// The declared payload type, if any.
    pub fn get_message_type(&self) -> Option<&MessageType> {
        self.message_type.as_ref()
    }
}

fn recorded_id(mem: &Mem) -> u64 {
    // SYNC POINT with the compare-exchange in `Region::declare_type` of another
    // handle: an id read here is final (ids only ever go from 0 to one value).
    mem.u64(T_ID).load(Ordering::Acquire)
}

impl Region {
    /// The type recorded in the bus, if any: its identity and, once its
    /// declarer has written it, its description (bounded: the bytes are untrusted).
    pub fn recorded_type(&self) -> Option<(u64, Option<MessageType>)> {
        let m = &self.mem;
        let id = recorded_id(m);
        if id == 0 {
            return None;
        }
        // SYNC POINT with the Release store of `described` in `declare_type`:
        // the description fields were written before it.
        if m.u32(T_DESCRIBED).load(Ordering::Acquire) != 1 {
            return Some((id, None));
        }
        let r = Ordering::Relaxed;
        let kind = TypeKind::from_raw(m.u32(T_KIND).load(r));
        let len = (m.u32(T_NAME_LEN).load(r) as usize).min(TYPE_NAME_MAX);
        let mut name = vec![0u8; len];
        m.copy_out(T_NAME, &mut name);
        let desc = kind.map(|kind| MessageType {
            name: String::from_utf8_lossy(&name).into_owned(),
            kind,
            size: m.u32(T_SIZE).load(r),
            align: m.u32(T_ALIGN).load(r),
            schema: m.u64(T_SCHEMA).load(r),
        });
        Some((id, desc))
    }

    fn type_mismatch(&self, id: u64, t: &MessageType) -> Error {
        let existing = match self.recorded_type() {
            Some((_, Some(d))) if d.id() == id => d.to_string(),
            Some((_, Some(d))) => format!("{d} [recorded as {id:#018x}]"),
            _ => format!("a type recorded as {id:#018x} (its declarer has not described it)"),
        };
        Error::TypeMismatch { bus: self.bus.clone(), path: self.path.clone(), existing, requested: t.to_string() }
    }

    /// Before joining: a declared type that differs from the recorded one is refused.
    pub(crate) fn check_type(&self, t: Option<&MessageType>) -> Result<()> {
        let Some(t) = t else { return Ok(()) };
        match recorded_id(&self.mem) {
            0 => Ok(()),
            id if id == t.id() => Ok(()),
            id => Err(self.type_mismatch(id, t)),
        }
    }

    /// Records `t` if no type is recorded yet, else checks it (the loser of
    /// a race between two different types gets the mismatch).
    pub(crate) fn declare_type(&self, t: Option<&MessageType>) -> Result<()> {
        let Some(t) = t else { return Ok(()) };
        let id = t.id();
        let m = &self.mem;
        // SYNC POINT with the Acquire loads of `id` in `recorded_id`: one
        // declarer wins 0 -> id; everyone else sees the winner's id.
        match m.u64(T_ID).compare_exchange(0, id, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => {
                let r = Ordering::Relaxed;
                let name = &t.name.as_bytes()[..t.name.len().min(TYPE_NAME_MAX)];
                m.u32(T_KIND).store(t.kind.to_raw(), r);
                m.u32(T_SIZE).store(t.size, r);
                m.u32(T_ALIGN).store(t.align, r);
                m.u64(T_SCHEMA).store(t.schema, r);
                m.u32(T_NAME_LEN).store(name.len() as u32, r);
                m.copy_in(T_NAME, name);
                // SYNC POINT with the Acquire load of `described` in `recorded_type`.
                m.u32(T_DESCRIBED).store(1, Ordering::Release);
                Ok(())
            }
            Err(found) if found == id => Ok(()),
            Err(found) => Err(self.type_mismatch(found, t)),
        }
    }
}

impl Bus {
    /// The message type recorded in the bus, if a typed handle declared one
    /// (`None` also while its declarer has not finished describing it).
    pub fn message_type(&self) -> Option<MessageType> {
        self.region.recorded_type().and_then(|(_, d)| d)
    }

    /// After joining: records or checks the config's declared type.
    pub(crate) fn declared(self, cfg: &BusConfig) -> Result<Bus> {
        self.region.declare_type(cfg.message_type.as_ref())?;
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names() {
        assert_eq!(short_type_name("sensor::Reading"), "Reading");
        assert_eq!(short_type_name("u64"), "u64");
        assert_eq!(short_type_name("(u8, a::B)"), "(u8, B)");
        assert_eq!(short_type_name("alloc::vec::Vec<x::y::Z<u8>>"), "Vec<Z<u8>>");
        assert_eq!(short_type_name("[a::B; 4]"), "[B; 4]");
    }

    #[test]
    fn identity_covers_every_field() {
        let a = MessageType::pod::<u64>();
        assert_eq!(a.id(), MessageType::pod::<u64>().id());
        assert_ne!(a.id(), MessageType::pod::<i64>().id());
        assert_ne!(a.id(), MessageType::serde::<u64>().id());
        assert_ne!(a.id(), a.clone().schema(1).id());
        assert_ne!(MessageType::pod::<[u8; 8]>().id(), MessageType::pod::<[u8; 16]>().id());
    }

    #[test]
    fn declare_records_once_and_refuses_another_type() {
        let region = Region::heap(&BusConfig::default()).unwrap();
        assert!(region.recorded_type().is_none());
        let a = MessageType::pod::<u64>();
        let b = MessageType::serde::<String>();
        region.check_type(Some(&b)).unwrap();
        region.declare_type(Some(&a)).unwrap();
        region.declare_type(Some(&a)).unwrap();
        region.declare_type(None).unwrap();
        let (id, desc) = region.recorded_type().unwrap();
        assert_eq!((id, desc), (a.id(), Some(a.clone())));
        let err = region.check_type(Some(&b)).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("u64 (pod, 8 bytes, align 8)") && msg.contains("String (serde)"), "{msg}");
        assert!(matches!(region.declare_type(Some(&b)), Err(Error::TypeMismatch { .. })));
    }
}
