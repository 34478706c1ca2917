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
    let devices = list_input_devices().context("cannot list audio input devices")?;
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
        for c in &d.configs {
            writeln!(out, "    supports: {}", describe(c))?;
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

fn describe(c: &InputConfigRange) -> String {
    if c.min_sample_rate == c.max_sample_rate {
        format!(
            "{} Hz, {} ch, {:?}",
            c.min_sample_rate, c.channels, c.sample_format
        )
    } else {
        format!(
            "{}–{} Hz, {} ch, {:?}",
            c.min_sample_rate, c.max_sample_rate, c.channels, c.sample_format
        )
    }
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
}
