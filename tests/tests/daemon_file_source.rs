//! A session that says its audio is a file (`"source":"file"` in `start`) is sent faster than
//! real time by design: harkd sends it no `lagging` warning and counts no `lagging` error. A
//! live session sent as fast still gets both.

use hark_protocol::{AudioSource, ErrorCode};
use hark_tests::audio::Clip;
use hark_tests::harkd::{Builder, Harkd};
use hark_tests::native::{self, Client, Pace, Transcript};

/// Ten seconds of speech or so, sent at once, with a warning threshold far below the backlog.
async fn send_fast(harkd: &Harkd, source: AudioSource) -> Transcript {
    let clip = Clip::fixture("fox");
    let mut c = Client::connect(&harkd.ws_url("/v1/listen")).await;
    let mut start = native::start(clip.rate, clip.channels);
    start.source = source;
    c.start(&start).await;
    for _ in 0..4 {
        c.send_clip(&clip, 100, Pace::Fast).await;
    }
    c.close_and_collect().await
}

fn lagging_errors_counted(harkd: &Harkd) -> f64 {
    let page = harkd.get("/metrics", &[]).body;
    page.lines()
        .filter(|l| l.starts_with("harkd_errors_total") && l.contains("code=\"lagging\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn builder() -> Builder {
    Harkd::builder().args(["--lag-warning-s", "0.05"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_sent_fast_is_not_lagging() {
    let harkd = builder().start();
    let t = send_fast(&harkd, AudioSource::File).await;
    assert!(!t.finals().is_empty(), "{:?}", t.kinds());
    let lagging: Vec<_> = t
        .errors()
        .into_iter()
        .filter(|e| e.code == ErrorCode::Lagging)
        .collect();
    assert!(lagging.is_empty(), "{lagging:?}");
    assert_eq!(lagging_errors_counted(&harkd), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_audio_sent_too_fast_is_lagging() {
    let harkd = builder().start();
    let t = send_fast(&harkd, AudioSource::Live).await;
    assert!(
        t.errors().iter().any(|e| e.code == ErrorCode::Lagging),
        "{:?}",
        t.kinds()
    );
    assert!(lagging_errors_counted(&harkd) >= 1.0);
}
