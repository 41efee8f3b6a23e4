//! `sub --verify`: checks synthetic messages from any number of publishers.
//!
//! Each publisher (by id) has its own sequence from 0. A message with the
//! expected sequence advances it; one past it counts the gap as `lost` (and
//! remembers the missing numbers); one before it is `reordered` if it fills a
//! remembered gap (it is then no longer lost) and `duplicated` otherwise. A
//! message that is not a valid synthetic message is `corrupt`.
//!
//! The bus's own accounting is checked too, and a disagreement is `corrupt`:
//! - every message's place in the bus's total order follows the previous
//!   one's by exactly one plus the messages the bus reported lost in between
//!   (`Lagged`); in block mode nothing may be reported lost at all;
//! - messages missing inside a publisher's sequence (after its first message
//!   seen) cannot outnumber what the bus reported lost.
//!
//! In overwrite mode `lost` equals the bus's `Lagged` total when the
//! subscriber attached before the publishers started and received each
//! publisher's last message. Otherwise they legitimately differ: `lost` also
//! counts the messages a publisher sent before this subscriber attached, and
//! the bus also reports messages lost at the end of a publisher's sequence,
//! which no later message of that publisher reveals. Such a difference is
//! explained on stderr, not counted as corrupt.

use std::collections::{BTreeMap, HashMap};

use crate::synthetic::{self, Synthetic};

/// Gaps remembered per publisher (to tell reordered from duplicated); the
/// oldest are forgotten beyond this.
const MAX_GAPS: usize = 4096;
/// Problems described on stderr; the rest are only counted.
const MAX_NOTES: usize = 10;

#[derive(Default)]
struct Track {
    next: u64,
    /// Missing sequence ranges: start -> (end exclusive, inside the sequence).
    gaps: BTreeMap<u64, (u64, bool)>,
}

impl Track {
    /// Removes `seq` from the gaps; returns whether it was there and if that gap was interior.
    fn fill(&mut self, seq: u64) -> Option<bool> {
        let (&start, &(end, interior)) = self.gaps.range(..=seq).next_back()?;
        if seq >= end {
            return None;
        }
        self.gaps.remove(&start);
        if start < seq {
            self.gaps.insert(start, (seq, interior));
        }
        if seq + 1 < end {
            self.gaps.insert(seq + 1, (end, interior));
        }
        Some(interior)
    }

    fn add_gap(&mut self, start: u64, end: u64, interior: bool) {
        self.gaps.insert(start, (end, interior));
        while self.gaps.len() > MAX_GAPS {
            self.gaps.pop_first();
        }
    }
}

/// The running counts of one verifying subscriber.
#[derive(Default)]
pub struct Verifier {
    pubs: HashMap<u64, Track>,
    /// Messages received (valid or not).
    pub received: u64,
    /// Messages missing from the publishers' sequences.
    pub lost: u64,
    /// Block mode: messages a publisher sent before its first one this
    /// subscriber received (published before it attached, or no longer in
    /// the ring when it attached with `--from oldest`). Not lost: a lossless
    /// bus delivers what is published after a subscriber attached.
    pub before_attach: u64,
    /// Invalid messages and disagreements with the bus's accounting.
    pub corrupt: u64,
    /// Messages that arrived after a later one of their publisher.
    pub reordered: u64,
    /// Messages seen twice.
    pub duplicated: u64,
    /// Total the bus reported lost through `Lagged`.
    pub lagged: u64,
    /// Messages the bus reported abandoned (a publisher claimed space and
    /// never committed it: it died, was stopped past the unblock timeout, or
    /// dropped a loan). Each took a place in the total order.
    pub abandoned: u64,
    interior_lost: u64,
    last_bus_seq: Option<u64>,
    pending_lag: u64,
    overwrite: bool,
    notes: Vec<String>,
    notes_dropped: u64,
}

impl Verifier {
    /// A verifier for a bus with this overflow policy.
    pub fn new(overwrite: bool) -> Self {
        Verifier { overwrite, ..Default::default() }
    }

    fn note(&mut self, what: String) {
        if self.notes.len() < MAX_NOTES {
            self.notes.push(what);
        } else {
            self.notes_dropped += 1;
        }
    }

    /// The bus reported `lost` messages lost (`RecvError::Lagged`).
    pub fn on_lagged(&mut self, lost: u64) {
        self.lagged = self.lagged.saturating_add(lost);
        self.pending_lag = self.pending_lag.saturating_add(lost);
        if !self.overwrite {
            self.corrupt += 1;
            self.note(format!("the bus reported {lost} messages lost, but it is in block mode"));
        }
    }

    /// The bus passed `n` abandoned claims (`Subscriber::abandoned` grew):
    /// they took places in the total order, so they are neither lost nor a
    /// gap in the bus's accounting.
    pub fn on_abandoned(&mut self, n: u64) {
        self.abandoned = self.abandoned.saturating_add(n);
        self.pending_lag = self.pending_lag.saturating_add(n);
    }

    /// A message at place `bus_seq` of the bus's total order. Returns its
    /// header when it is a valid synthetic message.
    pub fn on_message(&mut self, bus_seq: u64, msg: &[u8]) -> Option<Synthetic> {
        self.received += 1;
        if let Some(prev) = self.last_bus_seq {
            let expected = prev.wrapping_add(1).wrapping_add(self.pending_lag);
            if bus_seq != expected {
                self.corrupt += 1;
                let lag = self.pending_lag;
                self.note(format!(
                    "the bus delivered message #{bus_seq} after #{prev} and reported {lag} lost in between (expected #{expected})"
                ));
            }
        }
        self.last_bus_seq = Some(bus_seq);
        self.pending_lag = 0;
        let m = match synthetic::decode(msg) {
            Ok(m) => m,
            Err(e) => {
                self.corrupt += 1;
                self.note(format!("corrupt: {e} (bus message #{bus_seq})"));
                return None;
            }
        };
        let track = self.pubs.entry(m.id).or_default();
        let first = track.next == 0 && track.gaps.is_empty();
        if m.seq == track.next {
            track.next += 1;
        } else if m.seq > track.next {
            let gap = m.seq - track.next;
            let interior = !first;
            track.add_gap(track.next, m.seq, interior);
            track.next = m.seq + 1;
            if interior {
                self.lost = self.lost.saturating_add(gap);
                self.interior_lost = self.interior_lost.saturating_add(gap);
            } else if self.overwrite {
                // Overwrite mode: the start of a sequence may also have been
                // overrun; the bus's Lagged total tells (see `notes`).
                self.lost = self.lost.saturating_add(gap);
            } else {
                self.before_attach = self.before_attach.saturating_add(gap);
            }
        } else {
            match track.fill(m.seq) {
                Some(interior) => {
                    self.reordered += 1;
                    if interior {
                        self.lost = self.lost.saturating_sub(1);
                        self.interior_lost = self.interior_lost.saturating_sub(1);
                    } else if self.overwrite {
                        self.lost = self.lost.saturating_sub(1);
                    } else {
                        self.before_attach = self.before_attach.saturating_sub(1);
                    }
                    self.note(format!(
                        "reordered: message {} of publisher {:016x} arrived after message {}",
                        m.seq,
                        m.id,
                        track_next_minus_one(self.pubs.get(&m.id))
                    ));
                }
                None => {
                    self.duplicated += 1;
                    self.note(format!("duplicated: message {} of publisher {:016x} arrived again", m.seq, m.id));
                }
            }
        }
        Some(m)
    }

    /// Final checks; call once at the end, before [`summary`](Self::summary).
    pub fn finish(&mut self) {
        if self.overwrite && self.interior_lost > self.lagged {
            self.corrupt += 1;
            self.note(format!(
                "{} messages are missing inside the publishers' sequences, but the bus reported only {} lost",
                self.interior_lost, self.lagged
            ));
        }
    }

    /// Whether anything was corrupt, reordered or duplicated.
    pub fn failed(&self) -> bool {
        self.corrupt + self.reordered + self.duplicated > 0
    }

    /// The summary line: `received=N lost=L corrupt=C reordered=R
    /// duplicated=D`, followed by ` before_attach=B` when B is not 0 and
    /// ` abandoned=A` when A is not 0.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "received={} lost={} corrupt={} reordered={} duplicated={}",
            self.received, self.lost, self.corrupt, self.reordered, self.duplicated
        );
        if self.before_attach > 0 {
            s.push_str(&format!(" before_attach={}", self.before_attach));
        }
        if self.abandoned > 0 {
            s.push_str(&format!(" abandoned={}", self.abandoned));
        }
        s
    }

    /// Lines for stderr: the problems seen, and why `lost` differs from the
    /// bus's total when it legitimately does.
    pub fn notes(&self) -> Vec<String> {
        let mut out = self.notes.clone();
        if self.notes_dropped > 0 {
            out.push(format!("... and {} more problems", self.notes_dropped));
        }
        if self.abandoned > 0 {
            out.push(format!(
                "note: abandoned={}: publishers claimed that many places in the bus and never committed them \
                 (a publisher died or was stopped longer than the unblock timeout between claim and commit); \
                 those messages were not published, so they are not lost",
                self.abandoned
            ));
        }
        if self.before_attach > 0 {
            out.push(format!(
                "note: before_attach={}: the publishers sent that many messages before the first one this \
                 subscriber received from each (before it attached, or no longer in the ring when it attached); \
                 they are not lost. Start the subscriber first, or with --from oldest, to receive them",
                self.before_attach
            ));
        }
        if self.overwrite && self.lost != self.lagged {
            out.push(format!(
                "note: lost={} counts the messages missing from each publisher's sequence from 0 \
                 ({} of them after that publisher's first message received); the bus reported {} \
                 lost, which also counts messages lost at the end of a sequence",
                self.lost, self.interior_lost, self.lagged
            ));
        }
        out
    }
}

fn track_next_minus_one(t: Option<&Track>) -> u64 {
    t.map(|t| t.next.saturating_sub(1)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::encode;

    fn msg(id: u64, seq: u64) -> Vec<u8> {
        let mut b = vec![0u8; 48];
        encode(&mut b, id, seq, 0, 0);
        b
    }

    #[test]
    fn two_publishers_interleaved_in_order() {
        let mut v = Verifier::new(false);
        let mut g = 0;
        for s in 0..10 {
            for id in [1, 2] {
                v.on_message(g, &msg(id, s));
                g += 1;
            }
        }
        v.finish();
        assert_eq!(v.summary(), "received=20 lost=0 corrupt=0 reordered=0 duplicated=0");
        assert!(!v.failed());
    }

    #[test]
    fn gaps_reorders_and_duplicates() {
        let mut v = Verifier::new(false);
        v.on_message(0, &msg(1, 0));
        v.on_message(1, &msg(1, 3)); // 1 and 2 missing
        v.on_message(2, &msg(1, 1)); // fills a gap: reordered
        v.on_message(3, &msg(1, 1)); // again: duplicated
        v.on_message(4, &msg(1, 4));
        v.on_message(5, b"not synthetic at all, but long enough to look");
        v.finish();
        assert_eq!(v.summary(), "received=6 lost=1 corrupt=1 reordered=1 duplicated=1");
        assert!(v.failed());
    }

    #[test]
    fn overwrite_lagged_agrees() {
        let mut v = Verifier::new(true);
        v.on_message(0, &msg(1, 0));
        v.on_lagged(5);
        v.on_message(6, &msg(1, 6));
        v.finish();
        assert_eq!(v.summary(), "received=2 lost=5 corrupt=0 reordered=0 duplicated=0");
        assert!(v.notes().is_empty());
    }

    #[test]
    fn silent_loss_is_corrupt() {
        let mut v = Verifier::new(true);
        v.on_message(0, &msg(1, 0));
        v.on_message(3, &msg(1, 3)); // the bus skipped 2 messages without saying so
        v.finish();
        assert_eq!(v.corrupt, 2, "{:?}", v.notes());
    }

    #[test]
    fn late_joiner_counts_initial_gap_without_blaming_the_bus() {
        let mut v = Verifier::new(true);
        v.on_message(100, &msg(1, 100));
        v.on_message(101, &msg(1, 101));
        v.finish();
        assert_eq!(v.summary(), "received=2 lost=100 corrupt=0 reordered=0 duplicated=0");
    }

    #[test]
    fn late_joiner_in_block_mode_says_before_attach_not_lost() {
        let mut v = Verifier::new(false);
        v.on_message(3067, &msg(1, 3067));
        v.on_message(3068, &msg(1, 3068));
        v.on_message(3069, &msg(2, 0));
        v.finish();
        assert_eq!(v.summary(), "received=3 lost=0 corrupt=0 reordered=0 duplicated=0 before_attach=3067");
        assert!(!v.failed());
        assert!(v.notes().iter().any(|n| n.contains("not lost")), "{:?}", v.notes());
    }

    #[test]
    fn lagged_in_block_mode_is_corrupt() {
        let mut v = Verifier::new(false);
        v.on_message(0, &msg(1, 0));
        v.on_lagged(1);
        v.on_message(2, &msg(1, 2));
        v.finish();
        assert_eq!(v.corrupt, 1);
    }
}
