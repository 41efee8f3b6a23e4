//! The bytes of a bus file. docs/layout.md describes the same thing for
//! readers in other languages; keep the two in step.
//!
//! ```text
//! 0                 header page (HEADER_SIZE = 4096 bytes)
//!   0    magic            u64   b"SHMBUS\0\x01" read little-endian
//!   8    layout_version   u32   LAYOUT_VERSION
//!   12   ready            u32   0 while the creator writes, 1 when done (stored last)
//!   16   fingerprint      u64   FNV-1a of the layout description (sizes, offsets, endianness, page size)
//!   24   header_size      u32   4096
//!   28   page_size        u32   the creator's page size
//!   32   capacity         u64   bytes in the data region, a power of two
//!   40   max_message      u32   largest payload
//!   44   policy           u32   0 block, 1 overwrite
//!   48   flags            u32   bit 0: persistent
//!   52   peer_slots       u32   number of peer slots
//!   56   peer_offset      u64   = HEADER_SIZE
//!   64   data_offset      u64   peer_offset + peer_slots * PEER_SLOT_SIZE, rounded up to the page
//!   72   file_len         u64   data_offset + capacity
//!   80   initial_position u64   position of the first frame (0 except in tests)
//!   88   creator_pid      u32
//!   96   created_unix_ns  u64
//!   128  tail             u128  (position u64 at 128, message sequence u64 at 136), 16-aligned
//!   256  data_futex       u32   bumped by a publisher that wakes parked subscribers
//!   260  space_futex      u32   bumped by a subscriber that wakes parked publishers
//!   264  data_waiters     u32   peers in slots >= 64 parked on data_futex (slots < 64 use data_mask)
//!   268  space_waiters    u32   peers in slots >= 64 parked on space_futex (slots < 64 use space_mask)
//!   272  data_mask        u64   bit i: the peer in slot i (< 64) is parked (or about to park) on data_futex
//!   280  space_mask       u64   bit i: the peer in slot i (< 64) is parked (or about to park) on space_futex
//!   384  attach_epoch     u64   bumped when a subscriber attaches (publishers drop cached limits)
//!   392  peer_high_water  u32   1 + highest slot index ever used
//!   1024 hints            [u64; HINTS]  first frame start at or after each segment boundary
//!   2048 type tag         typetag::TypeTagArea (declared in typetag.rs): the declared message type
//! peer table at peer_offset: peer_slots slots of PEER_SLOT_SIZE bytes
//! data region at data_offset: capacity bytes of frames
//! ```

/// The magic number at offset 0.
pub const MAGIC: u64 = u64::from_le_bytes(*b"SHMBUS\0\x01");
/// The layout version this build reads and writes.
pub const LAYOUT_VERSION: u32 = 3;
/// Bytes of the header page.
pub const HEADER_SIZE: usize = 4096;
/// Bytes of one peer slot.
pub const PEER_SLOT_SIZE: usize = 128;
/// Bytes of a frame header; frame starts and lengths are multiples of this.
pub const FRAME_HEADER: usize = 32;
/// Frames are aligned to this many bytes (and so are payloads).
pub const FRAME_ALIGN: u64 = 64;
/// Number of resynchronisation hints (one per capacity / HINTS bytes).
pub const HINTS: usize = 128;
/// Smallest capacity.
pub const MIN_CAPACITY: u64 = 4096;
/// Largest capacity (1 TiB).
pub const MAX_CAPACITY: u64 = 1 << 40;
/// Most peer slots.
pub const MAX_PEERS: u32 = 1024;

// Header field offsets.
pub(crate) const OFF_MAGIC: usize = 0;
pub(crate) const OFF_VERSION: usize = 8;
pub(crate) const OFF_READY: usize = 12;
pub(crate) const OFF_FINGERPRINT: usize = 16;
pub(crate) const OFF_HEADER_SIZE: usize = 24;
pub(crate) const OFF_PAGE_SIZE: usize = 28;
pub(crate) const OFF_CAPACITY: usize = 32;
pub(crate) const OFF_MAX_MESSAGE: usize = 40;
pub(crate) const OFF_POLICY: usize = 44;
pub(crate) const OFF_FLAGS: usize = 48;
pub(crate) const OFF_PEER_SLOTS: usize = 52;
pub(crate) const OFF_PEER_OFFSET: usize = 56;
pub(crate) const OFF_DATA_OFFSET: usize = 64;
pub(crate) const OFF_FILE_LEN: usize = 72;
pub(crate) const OFF_INITIAL_POSITION: usize = 80;
pub(crate) const OFF_CREATOR_PID: usize = 88;
pub(crate) const OFF_CREATED_NS: usize = 96;
pub(crate) const OFF_EVICT_AFTER_MS: usize = 104;
pub(crate) const OFF_TAIL: usize = 128;
pub(crate) const OFF_DATA_FUTEX: usize = 256;
pub(crate) const OFF_SPACE_FUTEX: usize = 260;
pub(crate) const OFF_DATA_WAITERS: usize = 264;
pub(crate) const OFF_SPACE_WAITERS: usize = 268;
pub(crate) const OFF_DATA_MASK: usize = 272;
pub(crate) const OFF_SPACE_MASK: usize = 280;
pub(crate) const OFF_ATTACH_EPOCH: usize = 384;
pub(crate) const OFF_PEER_HIGH_WATER: usize = 392;
pub(crate) const OFF_REMOVED: usize = 396;
pub(crate) const OFF_HINTS: usize = 1024;

/// Header flag: keep the file after the last detach.
pub const FLAG_PERSISTENT: u32 = 1;

// Peer slot field offsets (relative to the slot).
pub(crate) const SLOT_STATE: usize = 0; // u32: 0 free, 1 publisher, 2 subscriber
pub(crate) const SLOT_PID: usize = 4; // u32
pub(crate) const SLOT_GENERATION: usize = 8; // u64
pub(crate) const SLOT_HOLD: usize = 16; // u64: position held back (sub cursor / pub claim start)
pub(crate) const SLOT_HOLD_END: usize = 24; // u64: publisher claim end
pub(crate) const SLOT_HOLD_FLAGS: usize = 32; // u32: HOLD_*
pub(crate) const SLOT_CLAIM_COUNT: usize = 36; // u32: publisher: messages in the announced claim (0 and 1: one)
pub(crate) const SLOT_CURSOR: usize = 40; // u64: subscriber's next position
pub(crate) const SLOT_MESSAGES: usize = 48; // u64: messages published / received
pub(crate) const SLOT_BYTES: usize = 56; // u64: payload bytes published / received
pub(crate) const SLOT_LOST: usize = 64; // u64: messages reported lost (Lagged)
pub(crate) const SLOT_ATTACHED_NS: usize = 72; // u64: wall-clock attach time
pub(crate) const SLOT_NEXT_SEQ: usize = 80; // u64: subscriber's next expected sequence number
pub(crate) const SLOT_CLAIM_FRAME: usize = 88; // u64: publisher: frame start of the announced claim
pub(crate) const SLOT_CLAIM_SEQ: usize = 96; // u64: publisher: sequence number of the announced claim
pub(crate) const SLOT_PARKED: usize = 104; // u32: PARKED_* bits while this peer is parked
pub(crate) const SLOT_REVOKED: usize = 108; // u32: REVOKED_* set by other peers (abandoned claim, eviction)
pub(crate) const SLOT_ABANDONED: usize = 112; // u64: subscriber: abandoned messages seen
pub(crate) const SLOT_BLOCKING_SINCE: usize = 120; // u64: subscriber: wall-clock ns since a publisher waits on it (0: none)

/// Slot state: free.
pub const STATE_FREE: u32 = 0;
/// Slot state: a publisher.
pub const STATE_PUBLISHER: u32 = 1;
/// Slot state: a subscriber.
pub const STATE_SUBSCRIBER: u32 = 2;

/// Hold flag: `hold` is a position this peer holds publishers back at.
pub const HOLD_ACTIVE: u32 = 1;
/// Hold flag (publishers): the claim `[hold, hold_end)` succeeded and is not committed yet.
pub const HOLD_CLAIMED: u32 = 2;
/// Hold flag (subscribers): the cursor is placed (the attach is complete);
/// only then does the subscriber count as present.
pub const HOLD_PLACED: u32 = 4;
/// Parked bit: waiting on `data_futex`.
pub const PARKED_DATA: u32 = 1;
/// Parked bit: waiting on `space_futex`.
pub const PARKED_SPACE: u32 = 2;
/// Revoked bit (publishers): the announced claim was abandoned by a peer
/// that waited on it longer than its unblock timeout; its bytes are
/// quarantined (skipped by every later claim) until the owner acknowledges
/// (clears this word) or dies.
pub const REVOKED_CLAIM: u32 = 1;
/// Revoked bit (subscribers): evicted for holding block-mode publishers back
/// longer than the bus's `evict_after_ms`; its hold no longer counts.
pub const REVOKED_EVICTED: u32 = 2;

// Frame header field offsets (relative to the frame start).
pub(crate) const FRAME_STAMP: usize = 0; // u64: the frame's own position, stored last (Release)
pub(crate) const FRAME_LEN: usize = 8; // u32: payload length, or the whole frame length for padding
pub(crate) const FRAME_META: usize = 12; // u32: flags in bits 0..16, publisher slot in bits 16..32
pub(crate) const FRAME_SEQ: usize = 16; // u64: global message sequence number
pub(crate) const FRAME_COUNT: usize = 24; // u32: abandoned padding: sequence numbers from `seq` it stands for (0 and 1: one)
/// Frame flag: padding; skip `len` bytes.
pub const FRAME_PAD: u16 = 1;
/// Frame flag (with `FRAME_PAD`): an abandoned claim. `seq` is the sequence
/// number the claim took; readers count it as abandoned, not lost.
pub const FRAME_ABANDONED: u16 = 2;

// OFD lock bytes on the bus file (locks may lie beyond the end of the file).
/// Shared by every attached handle; taken exclusively by the last one out and by gc.
pub(crate) const LOCK_ATTACH: i64 = 1 << 40;
/// Held exclusively by a creator until the file is complete.
pub(crate) const LOCK_INIT: i64 = (1 << 40) + 1;
/// Slot `i` is alive while byte `LOCK_SLOT_BASE + i` is write-locked.
pub(crate) const LOCK_SLOT_BASE: i64 = (1 << 40) + 64;

// The layout's own consistency, checked at compile time: fields do not
// overlap, and each hot word sits on its own pair of cache lines (128 bytes:
// the adjacent-line prefetcher pulls lines in pairs, as crossbeam's
// CachePadded notes), so publishers' CAS on the tail does not slow the
// subscribers' futex and epoch reads.
const _: () = {
    assert!(OFF_TAIL.is_multiple_of(128) && OFF_DATA_FUTEX.is_multiple_of(128) && OFF_ATTACH_EPOCH.is_multiple_of(128));
    assert!(OFF_CREATED_NS + 8 <= OFF_TAIL && OFF_TAIL + 16 <= OFF_DATA_FUTEX);
    assert!(OFF_SPACE_WAITERS + 4 <= OFF_ATTACH_EPOCH && OFF_PEER_HIGH_WATER + 4 <= OFF_HINTS);
    assert!(OFF_HINTS + HINTS * 8 <= HEADER_SIZE);
    assert!(SLOT_BLOCKING_SINCE + 8 <= PEER_SLOT_SIZE && SLOT_NEXT_SEQ + 8 <= SLOT_CLAIM_FRAME);
    assert!(OFF_EVICT_AFTER_MS + 4 <= OFF_TAIL && OFF_SPACE_MASK + 8 <= OFF_ATTACH_EPOCH);
    assert!(OFF_REMOVED + 4 <= OFF_HINTS);
    assert!(
        FRAME_SEQ + 8 <= FRAME_COUNT
            && FRAME_COUNT + 4 <= FRAME_HEADER
            && FRAME_ALIGN.is_multiple_of(FRAME_HEADER as u64)
    );
    assert!(SLOT_HOLD_FLAGS + 4 <= SLOT_CLAIM_COUNT && SLOT_CLAIM_COUNT + 4 <= SLOT_CURSOR);
};

/// Largest payload allowed for a capacity: a frame may take at most a quarter of the ring,
/// so a claim with its end-of-lap padding never exceeds half of it.
pub fn max_message_for(capacity: u64) -> u64 {
    (capacity / 4).saturating_sub(FRAME_HEADER as u64).min(u64::from(u32::MAX))
}

/// Offset of the data region for a number of slots and a page size.
pub fn data_offset(peer_slots: u32, page_size: usize) -> u64 {
    let raw = (HEADER_SIZE + peer_slots as usize * PEER_SLOT_SIZE) as u64;
    raw.div_ceil(page_size as u64) * page_size as u64
}

/// The layout fingerprint: FNV-1a over a description of every size and offset
/// this build relies on, the byte order and the page size. Two builds that
/// disagree on any of these refuse each other's files.
pub fn fingerprint(page_size: usize) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in fingerprint_input(page_size).bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The string [`fingerprint`] hashes (FNV-1a 64), for readers in other
/// languages: docs/layout.md prints it for 4096-byte pages.
pub fn fingerprint_input(page_size: usize) -> String {
    let desc = format!(
        "shmbus-layout;v{LAYOUT_VERSION};{};page{page_size};hdr{HEADER_SIZE};slot{PEER_SLOT_SIZE};frame{FRAME_HEADER};align{FRAME_ALIGN};hints{HINTS}@{OFF_HINTS};tail@{OFF_TAIL};futex@{OFF_DATA_FUTEX},{OFF_SPACE_FUTEX},{OFF_DATA_WAITERS},{OFF_SPACE_WAITERS};epoch@{OFF_ATTACH_EPOCH};hw@{OFF_PEER_HIGH_WATER};slotfields{SLOT_STATE},{SLOT_PID},{SLOT_GENERATION},{SLOT_HOLD},{SLOT_HOLD_END},{SLOT_HOLD_FLAGS},{SLOT_CLAIM_COUNT},{SLOT_CURSOR},{SLOT_MESSAGES},{SLOT_BYTES},{SLOT_LOST},{SLOT_ATTACHED_NS},{SLOT_NEXT_SEQ},{SLOT_CLAIM_FRAME},{SLOT_CLAIM_SEQ},{SLOT_PARKED},{SLOT_REVOKED},{SLOT_ABANDONED},{SLOT_BLOCKING_SINCE};masks@{OFF_DATA_MASK},{OFF_SPACE_MASK};removed@{OFF_REMOVED};evict@{OFF_EVICT_AFTER_MS};framefields{FRAME_STAMP},{FRAME_LEN},{FRAME_META},{FRAME_SEQ},{FRAME_COUNT}",
        if cfg!(target_endian = "little") { "le" } else { "be" },
    );
    desc + crate::typetag::LAYOUT_DESC
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_offset_is_page_aligned() {
        assert_eq!(data_offset(64, 4096), 4096 + 8192);
        assert_eq!(data_offset(1, 4096), 8192);
        assert_eq!(data_offset(32, 4096), 8192);
    }

    #[test]
    fn docs_print_the_fingerprint_input() {
        let doc = include_str!("../../../docs/layout.md");
        assert!(
            doc.contains(&fingerprint_input(4096)),
            "docs/layout.md must quote fingerprint_input(4096):\n{}",
            fingerprint_input(4096)
        );
        assert!(
            doc.contains(&format!("{:#018x}", fingerprint(4096))),
            "docs/layout.md must quote fingerprint(4096) = {:#018x}",
            fingerprint(4096)
        );
    }

    #[test]
    fn fingerprint_depends_on_page_size() {
        assert_ne!(fingerprint(4096), fingerprint(65536));
        assert_eq!(fingerprint(4096), fingerprint(4096));
    }

    #[test]
    fn max_message_is_a_quarter_of_the_ring() {
        assert_eq!(max_message_for(4096), 1024 - 32);
        assert_eq!(max_message_for(1 << 20), (1 << 18) - 32);
    }
}
