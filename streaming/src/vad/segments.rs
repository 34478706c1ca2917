//! A whole recording cut into the speech segments a live stream of it would get.

use std::ops::Range;

use super::{GateConfig, GateEvent, SpeechGate, VadError};

/// Audio fed to the gate at a time: the gate's events copy the samples they carry, so a
/// bounded chunk keeps that copy small however long the recording is.
const CHUNK: usize = super::SAMPLE_RATE as usize;

/// The speech pieces of a 16 kHz mono recording, in order, as sample ranges: what
/// [`SpeechGate`] with `config` passes on when the recording is streamed through it, each
/// segment cut at its splits, so no piece is longer than `config.max_segment_ms`. Silence and
/// steady noise give no piece; pieces never overlap.
pub fn speech_segments(
    samples: &[f32],
    config: &GateConfig,
) -> Result<Vec<Range<usize>>, VadError> {
    let mut gate = SpeechGate::new(config.clone())?;
    let mut pieces = Vec::new();
    let mut open: Option<u64> = None;
    let mut events = Vec::new();
    let mut collect = |events: &mut Vec<GateEvent>| {
        for event in events.drain(..) {
            match event {
                GateEvent::SpeechStart { start_sample } => open = Some(start_sample),
                GateEvent::SegmentSplit { at_sample } => {
                    if let Some(start) = open.replace(at_sample) {
                        pieces.push(start as usize..at_sample as usize);
                    }
                }
                GateEvent::SpeechEnd { end_sample } => {
                    if let Some(start) = open.take() {
                        pieces.push(start as usize..end_sample as usize);
                    }
                }
                GateEvent::Audio { .. } => {}
            }
        }
    };
    for chunk in samples.chunks(CHUNK) {
        gate.push(chunk, &mut events)?;
        collect(&mut events);
    }
    gate.finish(&mut events);
    collect(&mut events);
    pieces.retain(|piece| !piece.is_empty());
    Ok(pieces)
}
