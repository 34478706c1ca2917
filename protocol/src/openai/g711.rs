//! G.711 companded telephone audio (ITU-T G.711): μ-law (`audio/pcmu`, `g711_ulaw`) and
//! A-law (`audio/pcma`, `g711_alaw`), one byte per 8 kHz sample.

/// The linear 16-bit value of one μ-law byte.
pub fn ulaw_to_linear(byte: u8) -> i16 {
    // Bytes are sent inverted; the rest is sign, 3-bit exponent, 4-bit mantissa with a bias
    // of 0x84 (132) added before encoding.
    let u = !byte;
    let exponent = (u >> 4) & 0x07;
    let mantissa = i32::from(u & 0x0F);
    let magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    let value = if u & 0x80 != 0 { -magnitude } else { magnitude };
    value as i16
}

/// The linear 16-bit value of one A-law byte.
pub fn alaw_to_linear(byte: u8) -> i16 {
    // Even bits are sent inverted; sign 1 means positive.
    let a = byte ^ 0x55;
    let exponent = (a >> 4) & 0x07;
    let mantissa = i32::from(a & 0x0F);
    let magnitude = match exponent {
        0 => (mantissa << 4) + 8,
        e => ((mantissa << 4) + 0x108) << (e - 1),
    };
    let value = if a & 0x80 != 0 { magnitude } else { -magnitude };
    value as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulaw_reference_points() {
        // Values from the G.711 tables: 0xFF and 0x7F are the two zeros, 0x80/0x00 the peaks.
        assert_eq!(ulaw_to_linear(0xFF), 0);
        assert_eq!(ulaw_to_linear(0x7F), 0);
        assert_eq!(ulaw_to_linear(0x80), 32_124);
        assert_eq!(ulaw_to_linear(0x00), -32_124);
        assert_eq!(ulaw_to_linear(0xFE), 8);
        assert_eq!(ulaw_to_linear(0xEF), 132);
    }

    #[test]
    fn alaw_reference_points() {
        assert_eq!(alaw_to_linear(0xD5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(alaw_to_linear(0xAA), 32_256);
        assert_eq!(alaw_to_linear(0x2A), -32_256);
        assert_eq!(alaw_to_linear(0xC5), 264);
    }

    #[test]
    fn both_laws_are_monotonic_in_their_code_order() {
        // μ-law: codes 0x80..=0xFF run from the positive peak down to zero.
        let ulaw: Vec<i16> = (0x80..=0xFFu8).map(ulaw_to_linear).collect();
        assert!(ulaw.windows(2).all(|w| w[0] > w[1]));
        // A-law: positive codes (sign bit set after un-inverting) grow with the code.
        let alaw: Vec<i16> = (0x80..=0xFFu8).map(|c| alaw_to_linear(c ^ 0x55)).collect();
        assert!(alaw.windows(2).all(|w| w[0] < w[1]));
    }
}
