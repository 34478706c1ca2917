//! The speech gate: per-stream state machine from raw audio to speech segments.

use super::VadError;
use super::classify::Classifier;
use super::config::{DetectorKind, GateConfig, MAX_ONSET_FRAMES};
use super::detector::{SAMPLE_RATE, VoiceDetector};
use super::history::SampleHistory;
use super::split::SplitFinder;
use super::webrtc::WebRtcVad;

/// The detector `config` names, after checking the whole config.
pub(crate) fn make_detector(config: &GateConfig) -> Result<Box<dyn VoiceDetector>, VadError> {
    config.validate()?;
    Ok(match config.detector {
        DetectorKind::Webrtc => Box::new(WebRtcVad::new(config.aggressiveness, config.frame_ms)?),
        #[cfg(feature = "earshot")]
        DetectorKind::Earshot => Box::new(super::EarshotVad::new()),
        #[cfg(not(feature = "earshot"))]
        DetectorKind::Earshot => return Err(VadError::DetectorUnavailable("earshot")),
    })
}

/// What the gate tells the engine. Positions are absolute sample indices of the stream
/// (16 kHz), counted from its first sample.
///
/// Within a segment the events come as `SpeechStart`, then `Audio` (and possibly
/// `SegmentSplit`) until `SpeechEnd`. The `Audio` events of a segment tile
/// `[start_sample, end_sample)` exactly: no gap, no overlap. Between segments nothing is
/// emitted.
#[derive(Debug, Clone, PartialEq)]
pub enum GateEvent {
    /// A segment opened; its audio begins at `start_sample`, pre-roll included.
    SpeechStart {
        /// First sample of the segment.
        start_sample: u64,
    },
    /// The next samples of the open segment, starting where the previous `Audio` ended.
    Audio {
        /// Absolute index of `samples[0]`.
        start_sample: u64,
        /// The samples, exactly as they were pushed.
        samples: Vec<f32>,
    },
    /// The open segment reached the span limit. It is cut at `at_sample`, the quietest point
    /// of the recent audio, which may lie before audio already sent: the piece before belongs
    /// to the old segment, the rest (already sent and still to come) to a new one that starts
    /// at `at_sample`. Every sample stays in exactly one piece.
    SegmentSplit {
        /// Where the old piece ends and the new one begins.
        at_sample: u64,
    },
    /// The segment closed; `end_sample` is one past its last sample: where speech stopped
    /// plus the hangover, not the end of the endpoint silence.
    SpeechEnd {
        /// One past the last sample of the segment.
        end_sample: u64,
    },
}

/// Speech gate of one stream: feed it 16 kHz mono `f32` audio in chunks of any size and it
/// passes on only the audio of speech segments.
///
/// The gate frames the audio for its [`VoiceDetector`], marks a frame *voiced* when the
/// detector and the energy-over-noise-floor test agree, and then:
///
/// * **opens** once `min_speech_ms` of the last `onset_window_ms` are voiced; the segment
///   starts `pre_roll_ms` before the first voiced frame of that window;
/// * **stays open** through unvoiced frames; the first `hangover_ms` after the last voiced
///   frame are passed on at once, later ones are held back until speech resumes;
/// * **closes** after `endpoint_silence_ms` without a voiced frame, dropping the held-back
///   silence, or when [`flush`](Self::flush) or [`finish`](Self::finish) is called;
/// * **splits** a segment about to exceed `max_segment_ms` at the quietest point of the last
///   `split_lookback_ms`.
///
/// Events depend only on the audio, never on how it was chunked. The gate holds no threads
/// or locks and allocates nothing per push except the sample vectors of `Audio` events.
pub struct SpeechGate {
    config: GateConfig,
    classifier: Classifier,
    /// Samples of the frame being assembled (the newest ones in `history`).
    in_frame: usize,
    history: SampleHistory,
    split: SplitFinder,
    /// One bit per recent frame, bit 0 the newest: voiced by the onset criterion.
    onset_bits: u64,
    onset_mask: u64,
    onset_needed: u32,
    pre_roll: u64,
    hangover: u64,
    endpoint: u64,
    max_piece: u64,
    state: State,
    /// End of the previous segment: a new pre-roll never reaches back past it.
    last_end: u64,
    failed: bool,
    finished: bool,
}

#[derive(Debug, Clone, Copy)]
enum State {
    Closed,
    Open(OpenSegment),
}

#[derive(Debug, Clone, Copy)]
struct OpenSegment {
    /// Start of the current piece (segment start, or the last split).
    piece_start: u64,
    /// End of the newest voiced frame.
    last_voiced_end: u64,
    /// One past the last sample sent in `Audio`; later samples are held back.
    sent_end: u64,
}

const SAMPLES_PER_MS: u64 = SAMPLE_RATE as u64 / 1000;

fn ms_to_samples(ms: u32) -> u64 {
    u64::from(ms) * SAMPLES_PER_MS
}

impl SpeechGate {
    /// A gate with the detector named in `config`.
    pub fn new(config: GateConfig) -> Result<Self, VadError> {
        let detector = make_detector(&config)?;
        Self::with_detector(config, detector)
    }

    /// A gate around a detector of the caller's choice; `config.detector`,
    /// `aggressiveness` and `frame_ms` are then unused, the frame length is the detector's.
    pub fn with_detector(
        config: GateConfig,
        detector: Box<dyn VoiceDetector>,
    ) -> Result<Self, VadError> {
        let frame_len = detector.frame_len();
        if !(16..=480).contains(&frame_len) {
            return Err(VadError::InvalidConfig {
                field: "detector",
                reason: format!(
                    "frame length must be 1..=30 ms, detector uses {frame_len} samples"
                ),
            });
        }
        let frame_ms = (frame_len as u64).div_ceil(SAMPLES_PER_MS) as u32;
        config.validate_timings(frame_ms)?;

        let frame = frame_len as u64;
        let onset_frames = (ms_to_samples(config.onset_window_ms) / frame)
            .clamp(1, u64::from(MAX_ONSET_FRAMES)) as u32;
        let onset_needed =
            (ms_to_samples(config.min_speech_ms).div_ceil(frame).max(1) as u32).min(onset_frames);
        let pre_roll = ms_to_samples(config.pre_roll_ms);
        let endpoint = ms_to_samples(config.endpoint_silence_ms);
        // The ring must hold the pre-roll plus the onset window when the gate opens, and the
        // held-back silence when speech resumes, plus the frame being assembled.
        let history_len = (pre_roll + u64::from(onset_frames) * frame).max(endpoint) + 2 * frame;
        let lookback_frames = (ms_to_samples(config.split_lookback_ms) / frame) as usize;

        Ok(Self {
            classifier: Classifier::new(&config, detector),
            in_frame: 0,
            history: SampleHistory::new(history_len as usize),
            split: SplitFinder::new(lookback_frames, frame_len, frame_ms),
            onset_bits: 0,
            onset_mask: if onset_frames == 64 {
                u64::MAX
            } else {
                (1 << onset_frames) - 1
            },
            onset_needed,
            pre_roll,
            hangover: ms_to_samples(config.hangover_ms),
            endpoint,
            max_piece: ms_to_samples(config.max_segment_ms),
            state: State::Closed,
            last_end: 0,
            failed: false,
            finished: false,
            config,
        })
    }

    /// The settings in force.
    pub fn config(&self) -> &GateConfig {
        &self.config
    }

    /// Samples per detector frame.
    pub fn frame_len(&self) -> usize {
        self.classifier.frame_len()
    }

    /// Samples received so far.
    pub fn position(&self) -> u64 {
        self.history.end()
    }

    /// Whether a segment is open.
    pub fn is_open(&self) -> bool {
        matches!(self.state, State::Open(_))
    }

    /// Feeds the next chunk of the stream (16 kHz mono, `[-1, 1]`), appending what it
    /// causes to `out`.
    ///
    /// A chunk holding NaN or infinity is refused whole, before anything is consumed. A
    /// detector failure leaves the events produced so far in `out` and makes the gate
    /// refuse further audio.
    pub fn push(&mut self, samples: &[f32], out: &mut Vec<GateEvent>) -> Result<(), VadError> {
        if self.finished {
            return Err(VadError::Finished);
        }
        if self.failed {
            return Err(VadError::Poisoned);
        }
        if let Some(index) = samples.iter().position(|s| !s.is_finite()) {
            return Err(VadError::NonFiniteSample { index });
        }
        let mut rest = samples;
        while !rest.is_empty() {
            let take = rest.len().min(self.classifier.frame_len() - self.in_frame);
            self.history.push(&rest[..take]);
            self.in_frame += take;
            rest = &rest[take..];
            if self.in_frame == self.classifier.frame_len() {
                self.in_frame = 0;
                if let Err(e) = self.frame(out) {
                    self.failed = true;
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Closes the open segment now (push-to-talk release, client commit), keeping all audio
    /// received so far unless it is trailing silence already held back. Listening goes on:
    /// if speech continues, the next voiced frame opens a new segment where this one ended.
    pub fn flush(&mut self, out: &mut Vec<GateEvent>) {
        let State::Open(seg) = self.state else { return };
        let now = self.history.end();
        let framed = now - self.in_frame as u64;
        let end = if seg.sent_end < framed {
            seg.sent_end
        } else {
            if now > framed {
                out.push(GateEvent::Audio {
                    start_sample: framed,
                    samples: self.history.to_vec(framed, now),
                });
            }
            now
        };
        self.close(end, out);
    }

    /// Ends the stream: closes any open segment as [`flush`](Self::flush) does. Later pushes
    /// are refused with [`VadError::Finished`].
    pub fn finish(&mut self, out: &mut Vec<GateEvent>) {
        if !self.finished {
            self.flush(out);
            self.finished = true;
        }
    }

    fn close(&mut self, end: u64, out: &mut Vec<GateEvent>) {
        out.push(GateEvent::SpeechEnd { end_sample: end });
        self.last_end = end;
        self.state = State::Closed;
    }

    fn audio(&self, start: u64, end: u64, out: &mut Vec<GateEvent>) {
        if end > start {
            out.push(GateEvent::Audio {
                start_sample: start,
                samples: self.history.to_vec(start, end),
            });
        }
    }

    /// Runs the detector and the state machine on the frame just completed.
    fn frame(&mut self, out: &mut Vec<GateEvent>) -> Result<(), VadError> {
        let end = self.history.end();
        let frame = self.classifier.frame_len() as u64;
        let start = end - frame;

        let (a, b) = self.history.slices(start, end);
        let verdict = self.classifier.classify(a, b)?;
        self.split.record(verdict.power);
        self.onset_bits = ((self.onset_bits << 1) | u64::from(verdict.onset)) & self.onset_mask;

        match self.state {
            State::Closed => {
                if verdict.onset && self.onset_bits.count_ones() >= self.onset_needed {
                    // The oldest voiced frame of the window is where speech began.
                    let frames_back = 64 - u64::from(self.onset_bits.leading_zeros());
                    let onset = end - frames_back * frame;
                    let seg_start = onset
                        .saturating_sub(self.pre_roll)
                        .max(self.last_end)
                        .max(self.history.oldest());
                    out.push(GateEvent::SpeechStart {
                        start_sample: seg_start,
                    });
                    self.audio(seg_start, end, out);
                    self.state = State::Open(OpenSegment {
                        piece_start: seg_start,
                        last_voiced_end: end,
                        sent_end: end,
                    });
                }
            }
            State::Open(mut seg) => {
                let voiced = verdict.sustain;
                if voiced || end - seg.last_voiced_end <= self.hangover {
                    // Speech, or hangover right after it: send, with any held-back silence.
                    self.audio(seg.sent_end, end, out);
                    seg.sent_end = end;
                    if voiced {
                        seg.last_voiced_end = end;
                    }
                } else if end - seg.last_voiced_end >= self.endpoint {
                    self.close(seg.sent_end, out);
                    return Ok(());
                }
                self.state = State::Open(seg);
            }
        }

        if let State::Open(seg) = &mut self.state
            && end + frame - seg.piece_start > self.max_piece
        {
            if seg.sent_end < end {
                // Already in trailing silence: end the utterance where speech stopped.
                let at = seg.sent_end;
                self.close(at, out);
            } else {
                // The lookback is at most half the span, so a boundary is always found; the
                // current one is a valid fallback all the same.
                let at = self.split.quietest(seg.piece_start).unwrap_or(end);
                seg.piece_start = at;
                out.push(GateEvent::SegmentSplit { at_sample: at });
            }
        }
        Ok(())
    }
}
