//! The SPSC sample ring: ordering across threads, overflow accounting, end of stream.

use std::thread;
use std::time::Duration;

use hark_audio_io::audio_ring;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

#[test]
fn ten_seconds_cross_threads_in_random_chunks_without_loss_or_reordering() {
    const TOTAL: usize = 10 * 16_000;
    let (mut producer, mut consumer) = audio_ring(2_048);

    let writer = thread::spawn(move || {
        let mut rng = StdRng::seed_from_u64(1);
        let mut next = 0usize;
        let mut chunk = Vec::new();
        while next < TOTAL {
            let len = rng.random_range(1..=700).min(TOTAL - next);
            chunk.clear();
            chunk.extend((next..next + len).map(|i| i as f32));
            // The producer never blocks: offer only what fits, retry the rest later.
            let mut rest = &chunk[..];
            while !rest.is_empty() {
                let fit = rest.len().min(producer.vacant());
                let written = producer.push(&rest[..fit]);
                assert_eq!(written, fit);
                rest = &rest[written..];
                if !rest.is_empty() {
                    thread::yield_now();
                }
            }
            next += len;
            if rng.random_bool(0.01) {
                thread::sleep(Duration::from_micros(200));
            }
        }
        assert_eq!(producer.dropped(), 0);
        // Dropping the producer closes the ring.
    });

    let reader = thread::spawn(move || {
        let mut rng = StdRng::seed_from_u64(2);
        let mut received = Vec::with_capacity(TOTAL);
        let mut buf = vec![0f32; 1_000];
        loop {
            let closed = consumer.is_closed();
            let want = rng.random_range(1..=buf.len());
            let n = consumer.pop_into(&mut buf[..want]);
            received.extend_from_slice(&buf[..n]);
            if n == 0 {
                if closed {
                    break;
                }
                thread::yield_now();
            }
        }
        assert!(consumer.is_finished());
        assert_eq!(consumer.dropped(), 0);
        received
    });

    writer.join().unwrap();
    let received = reader.join().unwrap();
    assert_eq!(received.len(), TOTAL);
    for (i, &s) in received.iter().enumerate() {
        assert_eq!(s, i as f32, "sample {i} out of order");
    }
}

#[test]
fn overflow_is_counted_and_keeps_the_oldest_samples() {
    let (mut producer, mut consumer) = audio_ring(100);
    assert_eq!(producer.capacity(), 100);
    let data: Vec<f32> = (0..150).map(|i| i as f32).collect();
    assert_eq!(producer.push(&data[..80]), 80);
    assert_eq!(producer.push(&data[80..]), 20);
    assert_eq!(producer.dropped(), 50);
    assert_eq!(consumer.dropped(), 50);
    assert_eq!(consumer.available(), 100);

    let mut out = vec![0f32; 200];
    assert_eq!(consumer.pop_into(&mut out), 100);
    assert_eq!(&out[..100], &data[..100]);
    // After draining there is room again; the counter keeps its total.
    assert_eq!(producer.push(&[1.0, 2.0]), 2);
    assert_eq!(consumer.dropped(), 50);
    assert_eq!(consumer.pop_into(&mut out), 2);
}

#[test]
fn closing_is_seen_after_the_last_sample() {
    let (mut producer, mut consumer) = audio_ring(16);
    producer.push(&[0.5; 10]);
    assert!(!consumer.is_closed());
    producer.close();
    assert!(consumer.is_closed());
    assert!(!consumer.is_finished(), "samples are still waiting");
    let mut out = [0f32; 16];
    assert_eq!(consumer.pop_into(&mut out), 10);
    assert!(consumer.is_finished());
}

#[test]
fn producer_learns_when_the_consumer_is_gone() {
    let (mut producer, consumer) = audio_ring(8);
    assert!(!producer.is_abandoned());
    drop(consumer);
    assert!(producer.is_abandoned());
    // Pushing still works and still counts overflow; nobody reads it.
    assert_eq!(producer.push(&[0.0; 10]), 8);
    assert_eq!(producer.dropped(), 2);
}

#[test]
fn a_blind_real_time_producer_loses_only_what_it_counts() {
    const TOTAL: usize = 10 * 16_000;
    let (mut producer, mut consumer) = audio_ring(1_024);
    let writer = thread::spawn(move || {
        let mut rng = StdRng::seed_from_u64(3);
        let mut next = 0usize;
        while next < TOTAL {
            let len = rng.random_range(1..=900).min(TOTAL - next);
            let chunk: Vec<f32> = (next..next + len).map(|i| i as f32).collect();
            producer.push(&chunk); // like a device callback: no retry
            next += len;
        }
    });
    let mut received = Vec::new();
    let mut buf = [0f32; 64];
    loop {
        let closed = consumer.is_closed();
        let n = consumer.pop_into(&mut buf);
        received.extend_from_slice(&buf[..n]);
        if n == 0 && closed {
            break;
        }
        // A reader slower than the producer, so the ring must overflow.
        thread::sleep(Duration::from_micros(100));
    }
    writer.join().unwrap();
    let dropped = consumer.dropped();
    assert!(
        dropped > 0,
        "the reader was expected to fall behind at least once"
    );
    assert_eq!(received.len() as u64 + dropped, TOTAL as u64);
    assert!(
        received.windows(2).all(|w| w[0] < w[1]),
        "order was not kept"
    );
}

#[test]
fn stream_types_can_move_between_threads() {
    fn assert_send<T: Send>() {}
    assert_send::<hark_audio_io::RingProducer>();
    assert_send::<hark_audio_io::RingConsumer>();
    assert_send::<hark_audio_io::StreamConverter>();
    assert_send::<hark_audio_io::CaptureHandle>();
    assert_send::<hark_audio_io::FileCapture>();
    assert_send::<hark_audio_io::MicCapture>();
}
