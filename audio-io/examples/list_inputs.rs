//! Lists the audio input devices and their formats: `cargo run -p hark-audio-io --example list_inputs`.

fn main() {
    match hark_audio_io::list_input_devices() {
        Ok(devices) if devices.is_empty() => println!("no input devices"),
        Ok(devices) => {
            for d in devices {
                let mark = if d.is_default { " (default)" } else { "" };
                println!("{}{mark}  [{}]", d.name, d.id);
                if let Some(f) = d.default_format {
                    println!(
                        "    default: {} Hz, {} ch, {:?}",
                        f.sample_rate, f.channels, f.sample_format
                    );
                }
                for c in d.configs {
                    println!(
                        "    {}-{} Hz, {} ch, {:?}",
                        c.min_sample_rate, c.max_sample_rate, c.channels, c.sample_format
                    );
                }
            }
        }
        Err(e) => println!("error: {e}"),
    }
    match hark_audio_io::MicCapture::default_device() {
        Ok(mic) => println!("default microphone: {} {:?}", mic.name(), mic.format()),
        Err(e) => println!("default microphone: {e}"),
    }
}
