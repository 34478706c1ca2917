//! A whole recording through the model in this process, cut where the streaming engine cuts.

use anyhow::{Context, Result};
use burn::tensor::backend::Backend;
use hark_model::speech::{Timings, joined_text};
use hark_model::{GenerateOptions, ModelError, SAMPLE_RATE, SpeechModel, Task, Transcript};
use hark_streaming::StreamConfig;
use hark_streaming::vad::speech_segments;

/// Transcribes 16 kHz mono `samples`. With `vad`, only the speech segments the streaming
/// engine's voice gate (in its default configuration) finds are transcribed, one after
/// another, so silence and noise give no text and each sentence is its own span; without it
/// the whole recording is speech. Either way the model's span limit (30 s) cuts what is
/// longer at quiet points. Span times are of the recording. `progress` hears how many
/// seconds of the recording are done after each segment.
pub fn transcribe_recording<B: Backend>(
    model: &SpeechModel<B>,
    samples: &[f32],
    task: &Task,
    opts: &GenerateOptions,
    vad: bool,
    mut progress: impl FnMut(f64),
) -> Result<Transcript> {
    let pieces = if vad {
        speech_segments(samples, &StreamConfig::default().vad.unwrap_or_default())
            .context("cannot find the speech")?
    } else {
        std::iter::once(0..samples.len()).collect()
    };
    let mut transcript = Transcript {
        text: String::new(),
        spans: Vec::new(),
        timings: Timings::default(),
    };
    for piece in pieces {
        let offset_s = piece.start as f64 / f64::from(SAMPLE_RATE);
        match model.transcribe(&samples[piece.clone()], task, opts) {
            Ok(part) => {
                transcript.timings.add(&part.timings);
                transcript
                    .spans
                    .extend(part.spans.into_iter().map(|mut span| {
                        span.start_s += offset_s;
                        span.end_s += offset_s;
                        span
                    }));
            }
            // A piece too short for one audio token holds no words; the gate's never are,
            // but a whole recording without VAD may be.
            Err(ModelError::TooShort { .. }) if vad => {}
            Err(e) => return Err(e.into()),
        }
        progress(piece.end as f64 / f64::from(SAMPLE_RATE));
    }
    transcript.text = joined_text(&transcript.spans);
    Ok(transcript)
}
