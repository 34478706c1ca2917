//! `hark devices`: the audio input devices `--device` can name.

use std::io::Write;

use anyhow::{Context, Result};
use clap::Args;
use hark_audio_io::{InputConfigRange, InputDeviceInfo, list_input_devices};

/// Flags of `hark devices`.
#[derive(Debug, Clone, Args)]
pub struct DevicesArgs {
    /// Also list every supported configuration of each device.
    #[arg(long)]
    pub all: bool,
}

/// Runs `hark devices`.
pub fn run(args: DevicesArgs) -> Result<()> {
    let devices = crate::quiet_stderr::silenced(list_input_devices)
        .context("cannot list audio input devices")?;
    let mut out = std::io::stdout().lock();
    if devices.is_empty() {
        writeln!(
            out,
            "no audio input devices found (no sound card or audio server); live clients can \
             read files with --input FILE"
        )?;
        return Ok(());
    }
    for device in &devices {
        write_device(&mut out, device, args.all)?;
    }
    if !devices.iter().any(|d| d.is_default) {
        writeln!(
            out,
            "no default input: pass --device NAME (or set HARK_DEVICE) to pick one"
        )?;
    }
    Ok(())
}

fn write_device(out: &mut dyn Write, d: &InputDeviceInfo, all: bool) -> std::io::Result<()> {
    let mark = if d.is_default { "* " } else { "  " };
    writeln!(out, "{mark}{}", d.name)?;
    if !d.id.is_empty() && d.id != d.name {
        writeln!(out, "    id: {}", d.id)?;
    }
    if let Some(f) = d.default_format {
        writeln!(
            out,
            "    default: {} Hz, {} channel(s), {:?}",
            f.sample_rate, f.channels, f.sample_format
        )?;
    }
    if all {
        for line in collapse(&d.configs) {
            writeln!(out, "    supports: {line}")?;
        }
    } else if !d.configs.is_empty() {
        let (lo, hi) = d.configs.iter().fold((u32::MAX, 0), |(lo, hi), c| {
            (lo.min(c.min_sample_rate), hi.max(c.max_sample_rate))
        });
        let channels = d.configs.iter().map(|c| c.channels).max().unwrap_or(0);
        writeln!(
            out,
            "    supports: {lo}–{hi} Hz, up to {channels} channel(s) ({} configurations; --all \
             lists them)",
            d.configs.len()
        )?;
    }
    Ok(())
}

/// One line per rate range and set of channel counts, naming every sample format offered
/// with them: ALSA's `null` device offers every format at 1–32 channels and any rate, which
/// listed one configuration a line made 640 lines.
fn collapse(configs: &[InputConfigRange]) -> Vec<String> {
    let mut by_rates: Vec<((u32, u32), Vec<&InputConfigRange>)> = Vec::new();
    for c in configs {
        let rates = (c.min_sample_rate, c.max_sample_rate);
        match by_rates.iter_mut().find(|(r, _)| *r == rates) {
            Some((_, group)) => group.push(c),
            None => by_rates.push((rates, vec![c])),
        }
    }
    let mut lines = Vec::new();
    for ((lo, hi), group) in by_rates {
        // Formats that come with the same channel counts share a line.
        let mut by_channels: Vec<(Vec<u16>, Vec<String>)> = Vec::new();
        let mut formats: Vec<String> = Vec::new();
        for c in &group {
            let format = format!("{:?}", c.sample_format);
            if !formats.contains(&format) {
                formats.push(format);
            }
        }
        for format in formats {
            let mut channels: Vec<u16> = group
                .iter()
                .filter(|c| format!("{:?}", c.sample_format) == format)
                .map(|c| c.channels)
                .collect();
            channels.sort_unstable();
            channels.dedup();
            match by_channels.iter_mut().find(|(ch, _)| *ch == channels) {
                Some((_, names)) => names.push(format),
                None => by_channels.push((channels, vec![format])),
            }
        }
        for (channels, names) in by_channels {
            lines.push(format!(
                "{}, {} ch, {}",
                rate_text(lo, hi),
                runs(&channels),
                names.join(" ")
            ));
        }
    }
    lines
}

fn rate_text(lo: u32, hi: u32) -> String {
    match (lo, hi) {
        // ALSA's plugins report "anything" as 1..=u32::MAX.
        (0..=1, u32::MAX) => "any rate".to_owned(),
        (lo, hi) if lo == hi => format!("{lo} Hz"),
        (lo, hi) => format!("{lo}–{hi} Hz"),
    }
}

/// Sorted numbers as runs: `1–4, 6`.
fn runs(values: &[u16]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < values.len() {
        let start = values[i];
        let mut end = start;
        while i + 1 < values.len() && values[i + 1] == end + 1 {
            i += 1;
            end = values[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}–{end}")
        });
        i += 1;
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use hark_audio_io::{CaptureFormat, SampleFormat};

    use super::*;

    #[test]
    fn a_device_is_summarised_in_a_few_lines() {
        let range = |channels, lo, hi| InputConfigRange {
            channels,
            min_sample_rate: lo,
            max_sample_rate: hi,
            sample_format: SampleFormat::I16,
        };
        let device = InputDeviceInfo {
            name: "USB Mic".into(),
            id: "alsa:hw:CARD=Mic,DEV=0".into(),
            is_default: true,
            default_format: Some(CaptureFormat {
                sample_rate: 48_000,
                channels: 1,
                sample_format: SampleFormat::I16,
            }),
            configs: vec![range(1, 44_100, 48_000), range(2, 16_000, 16_000)],
        };
        let mut out = Vec::new();
        write_device(&mut out, &device, false).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "* USB Mic\n    id: alsa:hw:CARD=Mic,DEV=0\n    default: 48000 Hz, 1 channel(s), I16\n    \
             supports: 16000–48000 Hz, up to 2 channel(s) (2 configurations; --all lists them)\n"
        );
        let mut out = Vec::new();
        write_device(&mut out, &device, true).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.contains("supports: 44100–48000 Hz, 1 ch, I16\n"),
            "{out}"
        );
        assert!(out.contains("supports: 16000 Hz, 2 ch, I16\n"), "{out}");
    }

    #[test]
    fn every_format_at_every_channel_count_is_one_line() {
        // ALSA's `null` device: 20 formats × 32 channel counts at any rate.
        let formats = [SampleFormat::I8, SampleFormat::I16, SampleFormat::F32];
        let mut configs = Vec::new();
        for sample_format in formats {
            for channels in 1..=32 {
                configs.push(InputConfigRange {
                    channels,
                    min_sample_rate: 1,
                    max_sample_rate: u32::MAX,
                    sample_format,
                });
            }
        }
        configs.push(InputConfigRange {
            channels: 2,
            min_sample_rate: 48_000,
            max_sample_rate: 48_000,
            sample_format: SampleFormat::I16,
        });
        assert_eq!(
            collapse(&configs),
            ["any rate, 1–32 ch, I8 I16 F32", "48000 Hz, 2 ch, I16"]
        );
        assert_eq!(runs(&[1, 2, 3, 5, 7, 8]), "1–3, 5, 7–8");
    }
}
