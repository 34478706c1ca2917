//! Where `hark transcribe` puts each file's result, in the format asked for.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::formats::{Format, Transcript, write_transcript};

/// Per-file output: stdout, or one file per input in `--out-dir`.
#[derive(Debug)]
pub struct FileOutput {
    format: Format,
    out_dir: Option<PathBuf>,
    several: bool,
}

impl FileOutput {
    /// Output for `files` inputs. Subtitles and Markdown are whole documents, so several
    /// inputs need a directory to put one document each in.
    pub fn new(format: Format, out_dir: Option<PathBuf>, files: usize) -> Result<Self> {
        let several = files > 1;
        if several && out_dir.is_none() && matches!(format, Format::Srt | Format::Vtt | Format::Md)
        {
            bail!(
                "--format {} writes one document per input: with several files, pass --out-dir DIR",
                format.extension()
            );
        }
        if let Some(dir) = &out_dir {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        Ok(FileOutput {
            format,
            out_dir,
            several,
        })
    }

    /// Writes one input's result: `text` for txt, `json` for json (one line on stdout, a
    /// pretty file in --out-dir), the transcript for the document formats.
    pub fn write(
        &self,
        file: &Path,
        text: &str,
        json: &impl Serialize,
        transcript: impl FnOnce() -> Transcript,
    ) -> Result<()> {
        match &self.out_dir {
            Some(dir) => {
                let stem = file.file_stem().unwrap_or(file.as_os_str());
                let path = dir.join(stem).with_extension(self.format.extension());
                let mut out = std::fs::File::create(&path)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                match self.format {
                    Format::Txt => writeln!(out, "{text}")?,
                    Format::Json => {
                        serde_json::to_writer_pretty(&mut out, json)?;
                        writeln!(out)?;
                    }
                    _ => write_transcript(&mut out, self.format, &transcript())?,
                }
                out.flush()?;
            }
            None => {
                let mut out = std::io::stdout().lock();
                match self.format {
                    Format::Txt if self.several => writeln!(out, "{}: {text}", file.display())?,
                    // No speech, no output: not even an empty line.
                    Format::Txt if text.is_empty() => {}
                    Format::Txt => writeln!(out, "{text}")?,
                    Format::Json => {
                        serde_json::to_writer(&mut out, json)?;
                        writeln!(out)?;
                    }
                    _ => write_transcript(&mut out, self.format, &transcript())?,
                }
                out.flush()?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::Segment;

    #[test]
    fn documents_for_several_files_need_a_directory() {
        assert!(FileOutput::new(Format::Srt, None, 2).is_err());
        assert!(FileOutput::new(Format::Txt, None, 2).is_ok());
        assert!(FileOutput::new(Format::Vtt, None, 1).is_ok());
    }

    #[test]
    fn out_dir_gets_one_file_per_input() {
        let dir = tempfile::tempdir().unwrap();
        let out = FileOutput::new(Format::Vtt, Some(dir.path().join("subs")), 2).unwrap();
        for (name, text) in [("a/fox.wav", "fox"), ("b/lights.flac", "lights")] {
            out.write(Path::new(name), text, &(), || {
                Transcript::new(
                    name.into(),
                    None,
                    1.0,
                    vec![Segment {
                        id: 0,
                        start: 0.25,
                        end: 1.0,
                        text: text.into(),
                    }],
                )
            })
            .unwrap();
        }
        let fox = std::fs::read_to_string(dir.path().join("subs/fox.vtt")).unwrap();
        assert_eq!(fox, "WEBVTT\n\n00:00:00.250 --> 00:00:01.000\nfox\n\n");
        assert!(dir.path().join("subs/lights.vtt").exists());
    }
}
