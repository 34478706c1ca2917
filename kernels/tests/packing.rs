//! Formats, quantizers, row dequantization and the packed byte form.

mod common;

use std::sync::Arc;

use common::{Rng, dequantized};
use half::f16;
use hark_kernels::{
    BlockQ4, BlockQ8, Format, Isa, KernelError, PackedMatrix, QK, SharedBytes, available_isas,
    detected_isa, quantizable, with_isa,
};

#[test]
fn format_names_round_trip() {
    for f in Format::ALL {
        assert_eq!(f.to_string().parse::<Format>().unwrap(), f);
    }
    assert_eq!("BF16".parse::<Format>().unwrap(), Format::BF16);
    assert!(matches!(
        "q5".parse::<Format>(),
        Err(KernelError::UnknownFormat(_))
    ));
    for isa in Isa::ALL {
        assert_eq!(isa.to_string().parse::<Isa>().unwrap(), isa);
    }
}

#[test]
fn quantizable_needs_whole_blocks() {
    assert!(quantizable(33, Format::F16) && quantizable(64, Format::Q4));
    assert!(!quantizable(48, Format::Q8));
    let err = PackedMatrix::from_f32(1, 48, &[0.0; 48], Format::Q8).unwrap_err();
    assert!(
        matches!(err, KernelError::NotQuantizable { cols: 48, .. }),
        "{err}"
    );
}

#[test]
fn q8_error_is_at_most_half_a_step() {
    let w = Rng::new(11).vec(4 * 64);
    let m = PackedMatrix::from_f32(4, 64, &w, Format::Q8).unwrap();
    assert_eq!(m.storage_bytes(), 8 * 34);
    for (block, got) in w.chunks(QK).zip(dequantized(&m).chunks(QK)) {
        let amax = block.iter().fold(0.0f32, |a, v| a.max(v.abs()));
        let step = f16::from_f32(amax / 127.0).to_f32();
        for (a, b) in block.iter().zip(got) {
            assert!(
                (a - b).abs() <= step * 0.5 + 1e-7,
                "{a} -> {b}, step {step}"
            );
        }
    }
}

#[test]
fn q4_error_is_at_most_half_a_step_and_keeps_the_range() {
    let mut w = Rng::new(12).vec(2 * 96);
    w[..QK].fill(0.25); // an all-equal block: d = 0, exact
    let m = PackedMatrix::from_f32(2, 96, &w, Format::Q4).unwrap();
    assert_eq!(m.storage_bytes(), 6 * 20);
    let got = dequantized(&m);
    assert!(got[..QK].iter().all(|&v| v == 0.25));
    for (block, got) in w.chunks(QK).zip(got.chunks(QK)) {
        let (min, max) = block
            .iter()
            .fold((1.0f32, -1.0f32), |(l, h), &v| (l.min(v), h.max(v)));
        let step = f16::from_f32((max - min) / 15.0).to_f32();
        // f16 rounding of m and d adds a little on top of the half step.
        let slack = 1e-3 * (min.abs() + max.abs()) + 1e-6;
        for (a, b) in block.iter().zip(got) {
            assert!(
                (a - b).abs() <= step * 0.5 + slack,
                "{a} -> {b}, step {step}"
            );
        }
    }
}

#[test]
fn q4_block_layout_is_ggml_q4_1() {
    let one = f16::from_f32(1.0);
    let mut qs = [0u8; 16];
    qs[0] = 0x21; // q[0] = 1, q[16] = 2
    qs[15] = 0xF0; // q[15] = 0, q[31] = 15
    let block = BlockQ4 {
        d: f16::from_f32(0.5),
        m: one,
        qs,
    };
    assert_eq!(
        (block.q(0), block.q(16), block.q(15), block.q(31)),
        (1, 2, 0, 15)
    );
    let m = PackedMatrix::from_q4_blocks(1, 32, vec![block]).unwrap();
    let mut row = [0.0; 32];
    m.row_f32(0, &mut row);
    assert_eq!(
        (row[0], row[16], row[15], row[31], row[1]),
        (1.5, 2.0, 1.0, 8.5, 1.0)
    );
}

#[test]
fn q8_blocks_wrap_and_check_length() {
    let block = BlockQ8 {
        d: f16::from_f32(0.5),
        qs: std::array::from_fn(|i| i as i8 - 16),
    };
    let m = PackedMatrix::from_q8_blocks(1, 32, vec![block]).unwrap();
    let mut row = [0.0; 32];
    m.row_f32(0, &mut row);
    assert_eq!((row[0], row[16], row[31]), (-8.0, 0.0, 7.5));
    let err = PackedMatrix::from_q8_blocks(2, 32, vec![block]).unwrap_err();
    assert!(
        matches!(
            err,
            KernelError::Length {
                expected: 2,
                got: 1,
                ..
            }
        ),
        "{err}"
    );
    assert!(PackedMatrix::from_q4_blocks(1, 64, vec![]).is_err());
}

#[test]
fn non_finite_and_unrepresentable_weights_are_errors() {
    let mut w = vec![0.5f32; 64];
    w[40] = f32::NAN;
    for format in [Format::Q8, Format::Q4] {
        let err = PackedMatrix::from_f32(1, 64, &w, format).unwrap_err();
        assert!(matches!(err, KernelError::NonFinite { index: 40 }), "{err}");
    }
    let mut w = vec![0.0f32; 32];
    w[0] = 1e9;
    let err = PackedMatrix::from_f32(1, 32, &w, Format::Q8).unwrap_err();
    assert!(
        matches!(err, KernelError::ScaleOverflow { block: 0 }),
        "{err}"
    );
    let err = PackedMatrix::from_f32(2, 3, &[0.0; 5], Format::F32).unwrap_err();
    assert!(
        matches!(
            err,
            KernelError::Length {
                expected: 6,
                got: 5,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn shared_bytes_round_trip_aligned_and_misaligned() {
    let mut rng = Rng::new(13);
    let (rows, cols) = (5, 64);
    let x = rng.vec(2 * cols);
    for format in Format::ALL {
        let m = PackedMatrix::from_f32(rows, cols, &rng.vec(rows * cols), format).unwrap();
        let mut want = vec![0.0; 2 * rows];
        m.matmul(&x, 2, &mut want);
        for offset in [0, 1, 2, 3, 4, 8] {
            let mut file = vec![0xAAu8; offset];
            file.extend_from_slice(m.as_bytes());
            file.extend_from_slice(&[0x55; 7]);
            let bytes: SharedBytes = Arc::new(file);
            let view =
                PackedMatrix::from_shared_bytes(rows, cols, format, bytes.clone(), offset).unwrap();
            assert_eq!(view.as_bytes(), m.as_bytes(), "{format} at {offset}");
            assert_eq!(
                (view.rows(), view.cols(), view.format()),
                (rows, cols, format)
            );
            let mut y = vec![0.0; 2 * rows];
            view.matmul(&x, 2, &mut y);
            assert_eq!(y, want, "{format} at {offset}");
            let short = bytes.as_ref().as_ref().len() - offset - 6;
            let err =
                PackedMatrix::from_shared_bytes(rows, cols, format, bytes, short).unwrap_err();
            assert!(matches!(err, KernelError::OutOfRange { .. }), "{err}");
        }
    }
}

#[test]
fn aligned_shared_bytes_are_not_copied() {
    let m = PackedMatrix::from_f32(2, 32, &[0.25; 64], Format::F32).unwrap();
    let bytes: SharedBytes = Arc::new(m.as_bytes().to_vec());
    let view = PackedMatrix::from_shared_bytes(2, 32, Format::F32, bytes.clone(), 0).unwrap();
    assert_eq!(view.as_bytes().as_ptr(), (*bytes).as_ref().as_ptr());
    assert!(format!("{view:?}").contains("shared: true"));
}

#[test]
fn with_isa_is_scoped_and_capped() {
    let isas = available_isas();
    assert_eq!(isas[0], Isa::Portable);
    assert!(detected_isa() <= *isas.last().unwrap());
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        assert!(isas.contains(&Isa::Avx2));
    }
    let m = PackedMatrix::from_f32(1, 32, &[1.0; 32], Format::Q8).unwrap();
    let mut y = [0.0];
    // Asking for more than the CPU has runs the best available path.
    with_isa(Isa::Avx512, || m.matmul(&[1.0; 32], 1, &mut y));
    assert!((y[0] - 32.0).abs() < 0.05, "{}", y[0]);
    let r = std::panic::catch_unwind(|| with_isa(Isa::Portable, || panic!("inside")));
    assert!(r.is_err());
}

#[test]
fn packed_matrix_is_send_and_sync() {
    fn shared<T: Send + Sync + std::fmt::Debug>() {}
    shared::<PackedMatrix>();
    shared::<KernelError>();
}
