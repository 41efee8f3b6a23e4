//! Pure position arithmetic of the ring: no unsafe, no memory, no syscalls.
//!
//! Positions are 64-bit byte counters that only grow. They may wrap past
//! 2^64 (tests start them near the top), so every comparison is made on
//! wrapping differences, like TCP sequence numbers: `a` is at or before `b`
//! when `b - a` (wrapping) is below 2^63.

use crate::layout::{FRAME_ABANDONED, FRAME_ALIGN, FRAME_HEADER, FRAME_PAD, HINTS};

/// The geometry of a ring: everything the arithmetic needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Bytes in the data region (a power of two).
    pub capacity: u64,
    /// Largest payload.
    pub max_message: u32,
}

/// Where a claim of one message lands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The claim starts here (the tail before the claim).
    pub claim_start: u64,
    /// The frame starts here (`claim_start`, or the next lap boundary when the
    /// frame does not fit before the end of the region).
    pub frame_start: u64,
    /// Bytes of the frame (header + payload, rounded up to `FRAME_ALIGN`).
    pub frame_len: u64,
    /// The tail after the claim.
    pub claim_end: u64,
}

impl Placement {
    /// Bytes of padding before the frame (0 when it fits).
    pub fn padding(&self) -> u64 {
        self.frame_start.wrapping_sub(self.claim_start)
    }
}

/// Distance from `from` forward to `to` (wrapping).
#[inline]
pub fn distance(from: u64, to: u64) -> u64 {
    to.wrapping_sub(from)
}

/// True when `a` is at or before `b` (within half the position space).
#[inline]
pub fn at_or_before(a: u64, b: u64) -> bool {
    distance(a, b) < (1 << 63)
}

/// Round `n` up to a multiple of `FRAME_ALIGN`.
#[inline]
pub fn align_frame(n: u64) -> u64 {
    n.div_ceil(FRAME_ALIGN) * FRAME_ALIGN
}

/// What a committed frame header says, once checked against the geometry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    /// Padding: skip `len` bytes.
    Padding {
        /// Bytes to skip (the whole padding frame).
        len: u64,
    },
    /// An abandoned claim (padding that took a sequence number): skip `len`
    /// bytes and count the frame's sequence number as abandoned.
    Abandoned {
        /// Bytes to skip (the whole frame).
        len: u64,
    },
    /// A message of `len` payload bytes in a frame of `frame_len` bytes.
    Message {
        /// Payload length.
        len: usize,
        /// Header and payload, rounded up to the frame alignment.
        frame_len: u64,
    },
}

impl Geometry {
    /// `position & (capacity - 1)`.
    #[inline]
    pub fn offset(&self, pos: u64) -> usize {
        (pos & (self.capacity - 1)) as usize
    }

    /// Bytes from `pos` to the end of its lap.
    #[inline]
    pub fn room_to_lap_end(&self, pos: u64) -> u64 {
        self.capacity - (pos & (self.capacity - 1))
    }

    /// The frame length for a payload of `len` bytes.
    #[inline]
    pub fn frame_len(&self, len: usize) -> u64 {
        align_frame(FRAME_HEADER as u64 + len as u64)
    }

    /// The longest frame a valid publisher writes.
    #[inline]
    pub fn max_frame_len(&self) -> u64 {
        self.frame_len(self.max_message as usize)
    }

    /// Where a message of `len` bytes goes when the tail is `tail`: frames never
    /// wrap, so a frame that does not fit before the end of the region starts at
    /// the next lap and the rest of this lap becomes padding.
    pub fn place(&self, tail: u64, len: usize) -> Placement {
        let frame_len = self.frame_len(len);
        let room = self.room_to_lap_end(tail);
        let frame_start = if frame_len <= room { tail } else { tail.wrapping_add(room) };
        Placement { claim_start: tail, frame_start, frame_len, claim_end: frame_start.wrapping_add(frame_len) }
    }

    /// Checks a frame header read at `pos` (its `len` field and its flags,
    /// `meta & 0xffff`): the one place that decides whether a header is
    /// possible. The error says what is wrong, for a `Corrupt` error.
    pub fn classify(&self, pos: u64, len: u32, flags: u32) -> Result<FrameKind, String> {
        let room = self.room_to_lap_end(pos);
        let (pad, abandoned) = (u32::from(FRAME_PAD), u32::from(FRAME_ABANDONED));
        if flags & !(pad | abandoned) != 0 || flags == abandoned {
            return Err(format!("frame at position {pos} has unknown flags {flags:#x}"));
        }
        if flags & pad != 0 {
            let total = u64::from(len);
            if total < FRAME_HEADER as u64 || !total.is_multiple_of(FRAME_ALIGN) || total > room {
                return Err(format!(
                    "padding frame at position {pos} has impossible length {total} ({room} bytes to the end of the lap)"
                ));
            }
            if flags & abandoned != 0 {
                return Ok(FrameKind::Abandoned { len: total });
            }
            return Ok(FrameKind::Padding { len: total });
        }
        if len > self.max_message {
            return Err(format!(
                "frame at position {pos} claims {len} bytes, more than max_message {}",
                self.max_message
            ));
        }
        let frame_len = self.frame_len(len as usize);
        if frame_len > room {
            return Err(format!("frame at position {pos} of {len} bytes runs past the end of the ring"));
        }
        Ok(FrameKind::Message { len: len as usize, frame_len })
    }

    /// Bytes between hint boundaries.
    #[inline]
    pub fn segment(&self) -> u64 {
        self.capacity / HINTS as u64
    }

    /// The hint slot of boundary `b` (a multiple of `segment()`).
    #[inline]
    pub fn hint_index(&self, b: u64) -> usize {
        ((b / self.segment()) % HINTS as u64) as usize
    }

    /// The first hint boundary at or after `pos`.
    #[inline]
    pub fn next_boundary(&self, pos: u64) -> u64 {
        let seg = self.segment();
        pos.wrapping_add(seg - 1) & !(seg - 1)
    }

    /// The hints a claim must write: for each segment boundary `b` in
    /// `[claim_start, claim_end)`, the first frame start at or after `b`.
    pub fn hints_for(&self, p: &Placement) -> impl Iterator<Item = (u64, u64)> + '_ {
        let seg = self.segment();
        let span = distance(p.claim_start, p.claim_end);
        let first = self.next_boundary(p.claim_start);
        let p = *p;
        (0..)
            .map(move |k: u64| first.wrapping_add(k * seg))
            .take_while(move |b| distance(p.claim_start, *b) < span)
            .map(move |b| {
                let first_frame = if b == p.claim_start {
                    b
                } else if at_or_before(b, p.frame_start) {
                    p.frame_start
                } else {
                    p.claim_end
                };
                (b, first_frame)
            })
    }

    /// Whether a claim covers at least one segment boundary (and so must write hints).
    #[inline]
    pub fn claim_crosses_boundary(&self, p: &Placement) -> bool {
        let seg = self.segment();
        p.claim_start & (seg - 1) == 0 || distance(p.claim_start, p.claim_end) > seg - (p.claim_start & (seg - 1))
    }

    /// Whether a hint value `h` read for boundary `b` can be right: the first
    /// frame start at or after `b` lies within one segment plus one claim.
    pub fn hint_plausible(&self, b: u64, h: u64) -> bool {
        // A claim that skips a quarantined range may span up to about a lap,
        // but never a whole one: a value a lap or more past `b` is the hint
        // of the same slot for a later boundary.
        distance(b, h) < self.capacity && h & (FRAME_ALIGN - 1) == 0
    }

    /// Where a message of `len` bytes goes when the tail is `tail` and the
    /// ranges in `quarantine` (claims `[start, end)` abandoned while their
    /// owner may still write into them) must not be written in any lap: the
    /// frame moves past every instance of a quarantined range it would
    /// overlap, and the claim's padding covers what it skipped. Padding
    /// headers land only at the claim start and at lap boundaries (see
    /// `padding_parts`), never inside a quarantined range except at its very
    /// start or at a lap boundary, where its owner writes only through a
    /// compare-and-swap that fails on a newer stamp.
    #[inline]
    pub fn place_avoiding(&self, tail: u64, len: usize, quarantine: &[(u64, u64)]) -> Placement {
        let p = self.place(tail, len);
        if quarantine.is_empty() {
            return p;
        }
        self.place_past(p, quarantine)
    }

    #[cold]
    fn place_past(&self, mut p: Placement, quarantine: &[(u64, u64)]) -> Placement {
        let tail = p.claim_start;
        // Bounded: each round moves the frame past one range instance.
        for _ in 0..=2 * quarantine.len() + 2 {
            let mut moved = false;
            for &(qs, qe) in quarantine {
                let span = distance(qs, qe);
                if span == 0 || span >= self.capacity {
                    continue;
                }
                let fs = p.frame_start;
                // Offset of the frame start past the instance of `qs` at or before it.
                let r = distance(qs, fs) & (self.capacity - 1);
                let skip_to = if r < span {
                    Some(fs.wrapping_sub(r).wrapping_add(span)) // starts inside an instance
                } else if self.capacity - r < p.frame_len {
                    Some(fs.wrapping_add(self.capacity - r).wrapping_add(span)) // runs into the next one
                } else {
                    None
                };
                if let Some(to) = skip_to {
                    let frame_start = if p.frame_len <= self.room_to_lap_end(to) { to } else { self.next_lap(to) };
                    p = Placement {
                        claim_start: tail,
                        frame_start,
                        frame_len: p.frame_len,
                        claim_end: frame_start.wrapping_add(p.frame_len),
                    };
                    moved = true;
                }
            }
            if !moved {
                break;
            }
        }
        p
    }

    /// The padding frames that cover `[start, end)`: split at lap boundaries
    /// (a frame never wraps), each `(position, length)`.
    pub fn padding_parts(&self, start: u64, end: u64) -> impl Iterator<Item = (u64, u64)> + '_ {
        let mut pos = start;
        std::iter::from_fn(move || {
            let left = distance(pos, end);
            if left == 0 || left >= 1 << 63 {
                return None;
            }
            let n = left.min(self.room_to_lap_end(pos));
            let part = (pos, n);
            pos = pos.wrapping_add(n);
            Some(part)
        })
    }

    /// The lap boundary at or after `pos`: always a frame start.
    #[inline]
    pub fn next_lap(&self, pos: u64) -> u64 {
        pos.wrapping_add(self.capacity - 1) & !(self.capacity - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geo() -> Geometry {
        Geometry { capacity: 4096, max_message: 1000 }
    }

    #[test]
    fn placement_skips_every_instance_of_a_quarantined_range() {
        let g = geo(); // capacity 4096
                       // A claim [1024, 1216) abandoned one lap ago: its next instance is [5120, 5312).
        let q = [(1024u64, 1216u64)];
        // Far from it: unchanged.
        assert_eq!(g.place_avoiding(4096, 100, &q), g.place(4096, 100));
        // Would overlap: the frame moves past the instance, padding covers the gap.
        let p = g.place_avoiding(5056, 100, &q);
        assert_eq!((p.claim_start, p.frame_start, p.claim_end), (5056, 5312, 5312 + 192));
        // Starting exactly at the instance.
        let p = g.place_avoiding(5120, 8, &q);
        assert_eq!(p.frame_start, 5312);
        // Several laps later, the same offsets.
        let p = g.place_avoiding(5056 + 3 * 4096, 100, &q);
        assert_eq!(p.frame_start, 5312 + 3 * 4096);
        let parts: Vec<_> = g.padding_parts(4032, 4352).collect();
        assert_eq!(parts, vec![(4032, 64), (4096, 256)]);
    }

    #[test]
    fn frames_are_aligned_and_hold_their_header() {
        let g = geo();
        assert_eq!(g.frame_len(0), 64);
        assert_eq!(g.frame_len(1), 64);
        assert_eq!(g.frame_len(32), 64);
        assert_eq!(g.frame_len(33), 128);
        assert_eq!(g.frame_len(96), 128);
        assert_eq!(g.max_frame_len(), 1088);
    }

    #[test]
    fn a_frame_that_does_not_fit_moves_to_the_next_lap() {
        let g = geo();
        let p = g.place(4096 - 64, 100);
        assert_eq!(p.frame_start, 4096);
        assert_eq!(p.padding(), 64);
        assert_eq!(p.claim_end, 4096 + 192);
        let p = g.place(4096 - 192, 100);
        assert_eq!(p.frame_start, 4096 - 192);
        assert_eq!(p.padding(), 0);
        assert_eq!(p.claim_end, 4096);
    }

    #[test]
    fn placement_works_across_the_top_of_the_position_space() {
        let g = geo();
        let t = u64::MAX - 63; // 64 bytes before 2^64, lap end is at 2^64 == 0
        let p = g.place(t, 100);
        assert_eq!(p.frame_start, 0);
        assert_eq!(p.claim_end, 192);
        assert_eq!(distance(p.claim_start, p.claim_end), 256);
        assert!(at_or_before(t, p.claim_end));
        assert_eq!(g.offset(p.frame_start), 0);
    }

    #[test]
    fn hints_name_the_first_frame_at_or_after_each_boundary() {
        let g = geo(); // segment 32
        let p = g.place(0, 100); // [0, 192)
        let hints: Vec<_> = g.hints_for(&p).collect();
        assert_eq!(hints, vec![(0, 0), (32, 192), (64, 192), (96, 192), (128, 192), (160, 192)]);
        let p = g.place(4096 - 64, 100); // pad [4032, 4096), frame [4096, 4288)
        let hints: Vec<_> = g.hints_for(&p).collect();
        assert_eq!(hints[0], (4032, 4032));
        assert_eq!(hints[1], (4064, 4096));
        assert_eq!(hints[2], (4096, 4096));
        assert_eq!(hints.last().copied(), Some((4256, 4288)));
        for (b, h) in hints {
            assert!(g.hint_plausible(b, h));
        }
    }

    #[test]
    fn crossing_check_agrees_with_the_hint_list() {
        let g = geo();
        for tail in (0..3 * 4096u64).step_by(64).chain((u64::MAX - 8191..=u64::MAX - 63).step_by(64)) {
            for len in [0usize, 1, 31, 32, 100, 500, 1000] {
                let p = g.place(tail, len);
                assert_eq!(g.claim_crosses_boundary(&p), g.hints_for(&p).next().is_some(), "tail {tail} len {len}");
            }
        }
    }

    #[test]
    fn classify_accepts_possible_headers_only() {
        let g = geo();
        assert_eq!(g.classify(0, 100, 0), Ok(FrameKind::Message { len: 100, frame_len: 192 }));
        assert_eq!(g.classify(4096 - 64, 64, 1), Ok(FrameKind::Padding { len: 64 }));
        assert!(g.classify(4096 - 64, 128, 1).is_err(), "padding past the lap end");
        assert!(g.classify(0, 40, 1).is_err(), "unaligned padding");
        assert!(g.classify(0, 32, 1).is_err(), "padding of a header but not a frame alignment");
        assert!(g.classify(0, 16, 1).is_err(), "padding shorter than a header");
        assert!(g.classify(0, 1001, 0).is_err(), "longer than max_message");
        assert!(g.classify(4096 - 64, 100, 0).is_err(), "message past the lap end");
        assert!(g.classify(0, 10, 2).is_err(), "unknown flag");
    }

    #[test]
    fn lap_and_boundary_rounding() {
        let g = geo();
        assert_eq!(g.next_lap(0), 0);
        assert_eq!(g.next_lap(1), 4096);
        assert_eq!(g.next_lap(u64::MAX - 10), 0);
        assert_eq!(g.next_boundary(33), 64);
        assert_eq!(g.hint_index(4096 + 64), 2);
    }
}
