//! Streaming files through the real harkd: finals equal offline transcription, partials come
//! first, concurrency.

use hark_protocol::ServerMessage;
use hark_tests::audio::Clip;
use hark_tests::harkd::Harkd;
use hark_tests::native::{self, Client, Pace};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_stream_final_equals_offline() {
    let builder = Harkd::builder();
    let model = builder.model().map(|p| p.to_path_buf());
    let budget = builder.token_budget();
    let harkd = builder.start();
    let clip = Clip::fixture("fox");
    let mut c = Client::connect(&harkd.ws_url("/v1/listen")).await;
    let mut start = native::start(clip.rate, clip.channels);
    start.endpointing_ms = Some(0);
    start.partials = false;
    let ready = c.start(&start).await;
    assert!(ready.session_id.starts_with("s-"));
    c.send_clip(&clip, 100, Pace::Fast).await;
    let t = c.close_and_collect().await;
    println!("{:?}", t.kinds());
    let offline = hark_tests::offline::transcribe(model.as_deref(), &clip.path, budget);
    assert_eq!(t.text(), offline);
    assert_eq!(t.close_code, Some(1000));
    let _ = ServerMessage::Closed;
}
