//! Bookkeeping that lets a client survive a dropped connection without losing or repeating
//! audio: the audio it may have to send again ([`ReplayBuffer`]) and the mapping from each
//! server session's positions to the client's own continuous stream ([`Timeline`]).
//!
//! Positions are sample frames at 16 kHz counted from the first sample the client captured
//! ("absolute"). A resumed server session keeps its positions, so nothing changes. When resume
//! is impossible the client opens a fresh session and replays audio from the last point where
//! nothing was in flight; that session counts from 0 again, so the timeline adds an offset to
//! its times and to its segment ids.

use std::collections::VecDeque;

use hark_protocol::{Encoding, Final, Partial, encode_pcm};

use crate::input::RATE;

/// Seconds of stream time at 16 kHz for `samples`.
pub fn seconds(samples: u64) -> f64 {
    samples as f64 / f64::from(RATE)
}

/// Sample position of stream time `t` (negative or non-finite times clamp to 0).
pub fn samples_at(t: f64) -> u64 {
    if t.is_finite() && t > 0.0 {
        (t * f64::from(RATE)).round() as u64
    } else {
        0
    }
}

/// The audio from some absolute position on, as the `s16le` bytes that go on the wire.
#[derive(Debug, Default)]
pub struct ReplayBuffer {
    /// Absolute position of the first kept sample.
    base: u64,
    bytes: VecDeque<u8>,
}

impl ReplayBuffer {
    /// Appends captured samples (encoded once, so a replay sends the very same bytes).
    pub fn push(&mut self, samples: &[f32]) {
        self.bytes.extend(encode_pcm(Encoding::S16le, samples));
    }

    /// Absolute position of the first kept sample.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Absolute position after the last sample.
    pub fn end(&self) -> u64 {
        self.base + (self.bytes.len() / 2) as u64
    }

    /// Forgets audio before `pos` (clamped to what is held).
    pub fn trim_to(&mut self, pos: u64) {
        let pos = pos.clamp(self.base, self.end());
        let drop = ((pos - self.base) * 2) as usize;
        self.bytes.drain(..drop);
        self.base = pos;
    }

    /// Up to `max_samples` samples from `pos` on, as one binary frame; `None` when `pos` is not
    /// held (already forgotten, or not captured yet) or nothing follows it.
    pub fn frame_from(&self, pos: u64, max_samples: usize) -> Option<Vec<u8>> {
        if pos < self.base || pos >= self.end() {
            return None;
        }
        let start = ((pos - self.base) * 2) as usize;
        let len = (self.bytes.len() - start).min(max_samples * 2);
        Some(self.bytes.range(start..start + len).copied().collect())
    }
}

/// Maps server sessions onto the client's continuous stream and tracks which audio is done.
#[derive(Debug, Default)]
pub struct Timeline {
    /// Absolute position where the current server session's audio begins.
    offset: u64,
    /// Added to the current session's segment ids.
    id_offset: u64,
    /// Highest absolute segment id whose `final` was delivered.
    last_final: Option<u64>,
    /// Absolute start of the open segment, if one is open.
    open_start: Option<u64>,
    /// Everything before this absolute position is processed and finalised.
    done: u64,
    /// Highest absolute acknowledged position seen.
    acked: u64,
    /// Finals delivered.
    finals: u64,
}

impl Timeline {
    fn abs(&self, t: f64) -> f64 {
        t + seconds(self.offset)
    }

    /// Absolute position of an `acked_samples` of the current session.
    pub fn position(&self, acked: u64) -> u64 {
        self.offset + acked
    }

    /// Records `speech_started`; returns its absolute time.
    pub fn speech_started(&mut self, at: f64) -> f64 {
        let at = self.abs(at);
        self.open_start = Some(samples_at(at));
        at
    }

    /// Records `speech_stopped`; returns its absolute time.
    pub fn speech_stopped(&mut self, at: f64) -> f64 {
        let at = self.abs(at);
        if self.open_start.is_none() {
            self.done = self.done.max(samples_at(at));
        }
        at
    }

    /// Records a `partial` and returns it in absolute terms.
    pub fn partial(&mut self, mut p: Partial) -> Partial {
        p.segment_id += self.id_offset;
        p.start = self.abs(p.start);
        p.end = self.abs(p.end);
        p.acked_samples += self.offset;
        self.acked = self.acked.max(p.acked_samples);
        self.open_start.get_or_insert(samples_at(p.start));
        p
    }

    /// Records a `final` and returns it in absolute terms, or `None` when it was already
    /// delivered (a resumed session replays the finals the client may have missed).
    pub fn final_(&mut self, mut f: Final) -> Option<Final> {
        f.segment_id += self.id_offset;
        f.start = self.abs(f.start);
        f.end = self.abs(f.end);
        f.acked_samples += self.offset;
        self.acked = self.acked.max(f.acked_samples);
        if self.last_final.is_some_and(|last| f.segment_id <= last) {
            return None;
        }
        self.last_final = Some(f.segment_id);
        self.open_start = None;
        self.done = self.done.max(samples_at(f.end));
        self.finals += 1;
        Some(f)
    }

    /// Records `flushed`: every segment of the audio it covers is final.
    pub fn flushed(&mut self, acked: u64) -> u64 {
        let pos = self.position(acked);
        self.acked = self.acked.max(pos);
        if self.open_start.is_none() {
            self.done = self.done.max(pos);
        }
        pos
    }

    /// Where a fresh session would have to start so that no audio is lost or transcribed
    /// twice: the start of the open segment, or the end of what is finalised.
    pub fn restart_point(&self) -> u64 {
        self.open_start.unwrap_or(self.done)
    }

    /// Audio before this position is never needed again: a resumed session continues from
    /// at least the acknowledged position, a fresh one from [`Timeline::restart_point`].
    pub fn keep_from(&self) -> u64 {
        self.restart_point().min(self.acked)
    }

    /// The `last_final_segment_id` to put in a resume request: the current session's id of the
    /// last delivered final, if it came from this session.
    pub fn last_session_final(&self) -> Option<u64> {
        self.last_final
            .filter(|&id| id >= self.id_offset)
            .map(|id| id - self.id_offset)
    }

    /// A resumed session acknowledged `acked` of its samples.
    pub fn resumed(&mut self, acked: u64) -> u64 {
        let pos = self.position(acked);
        self.acked = self.acked.max(pos);
        pos
    }

    /// A fresh session starts at absolute position `at`.
    pub fn restart_fresh(&mut self, at: u64) {
        self.offset = at;
        self.id_offset = self.last_final.map_or(0, |id| id + 1);
        self.open_start = None;
        self.done = at;
        self.acked = at;
    }

    /// Finals delivered so far.
    pub fn finals(&self) -> u64 {
        self.finals
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partial(id: u64, start: f64, end: f64, acked: u64) -> Partial {
        Partial {
            segment_id: id,
            committed: "a".into(),
            tentative: "b".into(),
            start,
            end,
            acked_samples: acked,
            lag_s: 0.0,
            emit_latency_s: 0.0,
        }
    }

    fn final_(id: u64, start: f64, end: f64, acked: u64) -> Final {
        Final {
            segment_id: id,
            text: format!("segment {id}"),
            start,
            end,
            acked_samples: acked,
            lag_s: 0.0,
            emit_latency_s: 0.0,
        }
    }

    #[test]
    fn replay_buffer_keeps_positions_across_trims() {
        let mut buf = ReplayBuffer::default();
        let samples: Vec<f32> = (0..100).map(|i| i as f32 / 32768.0).collect();
        buf.push(&samples);
        assert_eq!((buf.base(), buf.end()), (0, 100));
        buf.trim_to(40);
        assert_eq!((buf.base(), buf.end()), (40, 100));
        assert_eq!(buf.frame_from(39, 10), None);
        let frame = buf.frame_from(40, 3).unwrap();
        assert_eq!(frame, [40, 0, 41, 0, 42, 0]);
        assert_eq!(buf.frame_from(98, 10).unwrap().len(), 4);
        assert_eq!(buf.frame_from(100, 10), None);
        buf.trim_to(1_000);
        assert_eq!((buf.base(), buf.end()), (100, 100));
        buf.trim_to(5);
        assert_eq!(buf.base(), 100);
    }

    #[test]
    fn replayed_finals_are_delivered_once() {
        let mut t = Timeline::default();
        assert!(t.final_(final_(0, 0.5, 1.0, 20_000)).is_some());
        assert!(t.final_(final_(1, 1.5, 2.0, 40_000)).is_some());
        assert_eq!(t.last_session_final(), Some(1));
        // After a resume the server sends every final after the one named; a stale one is
        // dropped either way.
        assert!(t.final_(final_(1, 1.5, 2.0, 40_000)).is_none());
        assert!(t.final_(final_(2, 2.5, 3.0, 60_000)).is_some());
        assert_eq!(t.finals(), 3);
    }

    #[test]
    fn keep_from_covers_the_open_segment_and_the_acknowledged_audio() {
        let mut t = Timeline::default();
        t.speech_started(0.5);
        t.partial(partial(0, 0.5, 1.0, 24_000));
        // The open segment began at 0.5 s: a fresh session would need it all.
        assert_eq!(t.restart_point(), 8_000);
        assert_eq!(t.keep_from(), 8_000);
        t.final_(final_(0, 0.5, 1.2, 32_000));
        t.speech_stopped(1.7);
        // Finalised up to the endpoint; acked beyond it.
        assert_eq!(t.restart_point(), samples_at(1.7));
        assert_eq!(t.keep_from(), samples_at(1.7));
        t.flushed(48_000);
        assert_eq!(t.keep_from(), 48_000);
    }

    #[test]
    fn a_fresh_session_is_shifted_onto_the_stream() {
        let mut t = Timeline::default();
        t.final_(final_(0, 0.5, 1.0, 20_000));
        t.final_(final_(1, 1.5, 2.0, 40_000));
        t.speech_started(2.5);
        let at = t.restart_point();
        assert_eq!(at, 40_000);
        t.restart_fresh(at);
        assert_eq!(t.last_session_final(), None);
        // The new session counts from 0; its segment 0 is the stream's segment 2.
        t.speech_started(0.1);
        let p = t.partial(partial(0, 0.1, 0.4, 8_000));
        assert_eq!(p.segment_id, 2);
        assert!((p.start - 2.6).abs() < 1e-9 && (p.end - 2.9).abs() < 1e-9);
        assert_eq!(p.acked_samples, 48_000);
        let f = t.final_(final_(0, 0.1, 0.9, 16_000)).unwrap();
        assert_eq!(f.segment_id, 2);
        assert!((f.end - 3.4).abs() < 1e-9);
        assert_eq!(t.last_session_final(), Some(0));
        assert_eq!(t.restart_point(), samples_at(3.4));
    }
}
