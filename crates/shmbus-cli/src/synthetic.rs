//! The synthetic message `pub` sends without `--stdin` and `sub --verify`
//! checks. All integers are little-endian:
//!
//! | offset  | size | field                                                      |
//! |---------|------|------------------------------------------------------------|
//! | 0       | 8    | publisher id, unique per `pub` process                     |
//! | 8       | 8    | sequence number, from 0, one per message of that publisher |
//! | 16      | 4    | length of the whole message in bytes                       |
//! | 20      | 2    | tag `SB`                                                   |
//! | 22      | 1    | format version, 1                                          |
//! | 23      | 1    | flags (bit 0: latency sample, bit 1: last message)         |
//! | 24      | 8    | send time, CLOCK_MONOTONIC nanoseconds                     |
//! | 32      | n-40 | filler derived from (id, sequence)                         |
//! | n-8     | 8    | FNV-1a 64 of bytes 0..n-8                                  |

/// Bytes before the filler.
pub const HEADER_LEN: usize = 32;
/// Bytes of the trailing checksum.
pub const CHECKSUM_LEN: usize = 8;
/// The smallest synthetic message.
pub const MIN_SIZE: usize = HEADER_LEN + CHECKSUM_LEN;
/// Flag: sent at a paced rate, a latency sample (demo).
pub const FLAG_SAMPLE: u8 = 1;
/// Flag: the publisher's last message (demo).
pub const FLAG_LAST: u8 = 2;

const TAG: [u8; 2] = *b"SB";
const VERSION: u8 = 1;

/// The header of a valid synthetic message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Synthetic {
    /// Publisher id.
    pub id: u64,
    /// Publisher sequence number.
    pub seq: u64,
    /// Flags.
    pub flags: u8,
    /// CLOCK_MONOTONIC nanoseconds at send time.
    pub sent_ns: u64,
}

/// Why bytes are not a valid synthetic message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Malformed {
    /// Shorter than the header and checksum.
    TooShort(usize),
    /// Not tagged as a synthetic message of this version.
    NotSynthetic,
    /// The length field disagrees with the message length.
    Length { field: u64, actual: usize },
    /// The checksum does not match.
    Checksum { id: u64, seq: u64 },
}

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Malformed::TooShort(n) => {
                write!(f, "a {n}-byte message is too short to be synthetic ({MIN_SIZE} bytes at least)")
            }
            Malformed::NotSynthetic => f.write_str("a message that is not a synthetic message of format 1 (no SB tag)"),
            Malformed::Length { field, actual } => {
                write!(f, "a message of {actual} bytes whose length field says {field}")
            }
            Malformed::Checksum { id, seq } => {
                write!(f, "message {seq} of publisher {id:016x} has a wrong checksum")
            }
        }
    }
}

/// A 64-bit id for this process's publisher: its pid in the high half (unique
/// among live processes) and a hash of the clock in the low half (so a reused
/// pid gives another id).
pub fn publisher_id() -> u64 {
    let pid = u64::from(std::process::id());
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    (pid << 32) | (splitmix64(now ^ crate::clock::monotonic_ns()) & 0xffff_ffff)
}

/// Fills `buf` (its whole length, at least [`MIN_SIZE`]) with a synthetic message.
pub fn encode(buf: &mut [u8], id: u64, seq: u64, flags: u8, sent_ns: u64) {
    let n = buf.len();
    debug_assert!(n >= MIN_SIZE);
    if n < MIN_SIZE {
        return;
    }
    buf[0..8].copy_from_slice(&id.to_le_bytes());
    buf[8..16].copy_from_slice(&seq.to_le_bytes());
    buf[16..20].copy_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
    buf[20..22].copy_from_slice(&TAG);
    buf[22] = VERSION;
    buf[23] = flags;
    buf[24..32].copy_from_slice(&sent_ns.to_le_bytes());
    fill(&mut buf[HEADER_LEN..n - CHECKSUM_LEN], id, seq);
    let sum = fnv1a(&buf[..n - CHECKSUM_LEN]);
    buf[n - CHECKSUM_LEN..].copy_from_slice(&sum.to_le_bytes());
}

/// Checks a synthetic message and returns its header.
pub fn decode(msg: &[u8]) -> Result<Synthetic, Malformed> {
    let n = msg.len();
    if n < MIN_SIZE {
        return Err(Malformed::TooShort(n));
    }
    let u64_at = |o: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&msg[o..o + 8]);
        u64::from_le_bytes(b)
    };
    if msg[20..22] != TAG || msg[22] != VERSION {
        return Err(Malformed::NotSynthetic);
    }
    let mut lb = [0u8; 4];
    lb.copy_from_slice(&msg[16..20]);
    let field = u64::from(u32::from_le_bytes(lb));
    if field != n as u64 {
        return Err(Malformed::Length { field, actual: n });
    }
    let (id, seq) = (u64_at(0), u64_at(8));
    if fnv1a(&msg[..n - CHECKSUM_LEN]) != u64_at(n - CHECKSUM_LEN) {
        return Err(Malformed::Checksum { id, seq });
    }
    // The checksum covers the filler, so a message whose filler was not
    // derived from (id, seq) only passes if it was built to pass.
    Ok(Synthetic { id, seq, flags: msg[23], sent_ns: u64_at(24) })
}

fn fill(dst: &mut [u8], id: u64, seq: u64) {
    let mut state = splitmix64(id ^ seq.rotate_left(32));
    let mut chunks = dst.chunks_exact_mut(8);
    for c in &mut chunks {
        state = splitmix64(state);
        c.copy_from_slice(&state.to_le_bytes());
    }
    let rest = chunks.into_remainder();
    if !rest.is_empty() {
        let last = splitmix64(state).to_le_bytes();
        let k = rest.len();
        rest.copy_from_slice(&last[..k]);
    }
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// FNV-1a, 64-bit.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_every_size() {
        for n in MIN_SIZE..200 {
            let mut buf = vec![0u8; n];
            encode(&mut buf, 0xabcd, 7, FLAG_LAST, 99);
            assert_eq!(decode(&buf), Ok(Synthetic { id: 0xabcd, seq: 7, flags: FLAG_LAST, sent_ns: 99 }));
        }
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let mut buf = vec![0u8; 64];
        encode(&mut buf, 1, 2, 0, 3);
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x10;
            assert!(decode(&bad).is_err(), "byte {i}");
        }
    }

    #[test]
    fn malformed() {
        assert_eq!(decode(b"hello"), Err(Malformed::TooShort(5)));
        assert_eq!(decode(&[0u8; 64]), Err(Malformed::NotSynthetic));
        let mut buf = vec![0u8; 64];
        encode(&mut buf, 1, 2, 0, 3);
        assert!(matches!(decode(&buf[..63]), Err(Malformed::Length { field: 64, actual: 63 })));
    }

    #[test]
    fn fnv_reference() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
