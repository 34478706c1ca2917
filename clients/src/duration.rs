//! Durations as people read them in a summary line.

/// `0.4 s`, `12.3 s`, `2 min 05 s`, `1 h 02 min`: short spans keep their tenths (a job that
/// took 0.4 s does not read as "00:00:00"), long ones drop what nobody needs.
pub fn readable(seconds: f64) -> String {
    let seconds = if seconds.is_finite() {
        seconds.max(0.0)
    } else {
        0.0
    };
    if seconds < 59.95 {
        return format!("{seconds:.1} s");
    }
    let whole = seconds.round() as u64;
    let (h, m, s) = (whole / 3600, whole / 60 % 60, whole % 60);
    if h == 0 {
        format!("{m} min {s:02} s")
    } else {
        format!("{h} h {m:02} min")
    }
}

#[cfg(test)]
mod tests {
    use super::readable;

    #[test]
    fn short_spans_keep_tenths_and_long_ones_drop_seconds() {
        assert_eq!(readable(0.0), "0.0 s");
        assert_eq!(readable(0.43), "0.4 s");
        assert_eq!(readable(12.34), "12.3 s");
        assert_eq!(readable(59.96), "1 min 00 s");
        assert_eq!(readable(125.0), "2 min 05 s");
        assert_eq!(readable(3_725.9), "1 h 02 min");
        assert_eq!(readable(f64::NAN), "0.0 s");
        assert_eq!(readable(-3.0), "0.0 s");
    }
}
