//! Finals through the real harkd depend on the audio alone (issue 16, part 4): the same clip
//! with partials on, sent at real time, at full speed, in odd frame sizes and beside other
//! sessions, gets byte-identical finals, equal to the partials-off final and to `hark
//! transcribe` (the embedded demo model, whose partials commit text the whole-segment decode
//! disagrees with on `april.wav`).

use hark_protocol::Start;
use hark_tests::audio::Clip;
use hark_tests::harkd::{Builder, Harkd};
use hark_tests::native::{self, Client, Pace, Transcript};

/// Silence endpointing off: the clip is one segment, as offline.
fn start(clip: &Clip, partials: bool) -> Start {
    let mut start = native::start(clip.rate, clip.channels);
    start.endpointing_ms = Some(0);
    start.partials = partials;
    start
}

/// Send `clip` in frames of `frame_bytes` (s16le) paced as asked; everything the server sent.
async fn session(
    harkd: &Harkd,
    clip: &Clip,
    partials: bool,
    frame_bytes: usize,
    pace: Pace,
) -> Transcript {
    let mut c = Client::connect(&harkd.ws_url("/v1/listen")).await;
    c.start(&start(clip, partials)).await;
    let bytes = clip.s16le();
    let bps = f64::from(clip.rate) * clip.frame_bytes() as f64;
    c.send_audio(&bytes, frame_bytes, bps, pace).await;
    c.close_and_collect().await
}

/// `hark transcribe --no-vad`: the whole file as one segment, as harkd with endpointing off.
fn offline_whole_file(clip: &Clip, max_new_tokens: usize) -> String {
    let out = std::process::Command::new(hark_tests::binary("hark"))
        .args(["transcribe", "--json", "--no-vad", "--max-new-tokens"])
        .arg(max_new_tokens.to_string())
        .arg(&clip.path)
        .output()
        .expect("run hark transcribe");
    assert!(
        out.status.success(),
        "hark transcribe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    line["text"].as_str().expect("text").to_owned()
}

fn finals(t: &Transcript) -> Vec<String> {
    t.finals().iter().map(|f| f.text.clone()).collect()
}

fn builder() -> Builder {
    Harkd::builder().embedded_model().args(["--workers", "2"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn finals_are_the_same_at_any_pacing_and_load() {
    let builder = builder();
    let harkd = builder.clone().start();
    let clip = Clip::fixture("april");
    let reference = session(&harkd, &clip, false, 3_200, Pace::Fast).await;
    let want = finals(&reference);
    assert_eq!(want.len(), 1, "{:?}", reference.kinds());
    assert!(!want[0].trim().is_empty());
    assert_eq!(
        want[0],
        offline_whole_file(&clip, builder.token_budget()),
        "the daemon's final is `hark transcribe`'s"
    );

    // Real time, 20 ms frames: partials all along.
    let realtime = session(&harkd, &clip, true, 640, Pace::Realtime(1.0)).await;
    assert!(
        realtime.kinds().contains(&"partial"),
        "{:?}",
        realtime.kinds()
    );
    assert_eq!(finals(&realtime), want, "real time");
    // Full speed, and odd frame sizes (whole samples, no grid alignment).
    for frame_bytes in [3_200, 1_554, 26, 40_002] {
        let t = session(&harkd, &clip, true, frame_bytes, Pace::Fast).await;
        assert_eq!(finals(&t), want, "full speed in {frame_bytes}-byte frames");
    }
    // Under load: six sessions at once, one of them at real time, the rest at full speed.
    let mut tasks = Vec::new();
    for (i, frame_bytes) in [640usize, 3_200, 1_554, 8_002, 26, 640]
        .into_iter()
        .enumerate()
    {
        let url = harkd.ws_url("/v1/listen");
        let clip = clip.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = Client::connect(&url).await;
            c.start(&start(&clip, true)).await;
            let pace = if i == 0 {
                Pace::Realtime(1.0)
            } else {
                Pace::Fast
            };
            let bytes = clip.s16le();
            let bps = f64::from(clip.rate) * clip.frame_bytes() as f64;
            c.send_audio(&bytes, frame_bytes, bps, pace).await;
            (frame_bytes, c.close_and_collect().await)
        }));
    }
    for t in tasks {
        let (frame_bytes, t) = t.await.unwrap();
        assert_eq!(finals(&t), want, "under load, {frame_bytes}-byte frames");
    }
}
