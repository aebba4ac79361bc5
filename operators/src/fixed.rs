//! Floats with a fixed number of decimals, written exactly as `format!("{:.N}", x)` writes them,
//! for decision reasons ("RSI 71.25"). Rust's fixed-precision formatting generates the exact
//! decimal expansion (Grisu in exact mode, Dragon as fallback): about 1,000 instructions a number,
//! a third of a trading decision's reason. Here a number is scaled and rounded in floating point
//! whenever that provably gives the same digits (it is not within rounding error of a tie), and
//! handed to the standard formatter otherwise. No crate writes `{:.N}` digit for digit like std.

use std::fmt;

/// `x` with `decimals` digits after the point, as `format!("{x:.decimals$}")` writes it (fast for
/// up to 9 decimals).
///
/// ```
/// use inflight_operators::Fixed;
/// assert_eq!(Fixed(71.254_9, 2).to_string(), "71.25");
/// assert_eq!(Fixed(-0.000_04, 4).to_string(), format!("{:.4}", -0.000_04));
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Fixed(pub f64, pub usize);

/// Powers of ten up to 10^9, exact as doubles and as integers.
const POW10: [u64; 10] = [1, 10, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000, 100_000_000, 1_000_000_000];

impl fmt::Display for Fixed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Fixed(x, decimals) = *self;
        let (slow, quick);
        let text = match fast(x, decimals) {
            // Only ASCII digits, '-' and '.' are written into the buffer.
            Some((buf, len)) => {
                quick = buf;
                std::str::from_utf8(&quick[..len]).map_err(|_| fmt::Error)?
            }
            None => {
                slow = format!("{x:.decimals$}");
                &slow
            }
        };
        // Width and alignment apply as to any text; the precision is this value's own.
        if f.width().is_some() && f.precision().is_none() { f.pad(text) } else { f.write_str(text) }
    }
}

impl Fixed {
    /// Appends the text to `out`, without the formatting machinery.
    pub fn push_to(self, out: &mut String) {
        match fast(self.0, self.1) {
            // Only ASCII digits, '-' and '.' are written into the buffer.
            Some((buf, len)) => out.push_str(std::str::from_utf8(&buf[..len]).unwrap_or_default()),
            None => {
                use fmt::Write;
                let _ = write!(out, "{self}");
            }
        }
    }
}

/// The digits of `x` with `decimals` decimals, when floating point gets them right for sure.
fn fast(x: f64, decimals: usize) -> Option<([u8; 40], usize)> {
    let scale = *POW10.get(decimals)?;
    let scaled = x.abs() * scale as f64;
    // Below 2^52 the fraction of `scaled` is exact; zero and non-finite values go to std.
    if !(scaled > 0.0 && scaled < 4.0e15) {
        return None;
    }
    // `scaled` is within a relative 2^-53 of the exact x * 10^decimals: unless it is that close
    // to a half, both round to the same integer.
    let tie = (scaled - scaled.floor() - 0.5).abs();
    if tie <= scaled * f64::EPSILON {
        return None;
    }
    let n = scaled.round() as u64;
    let (int, frac) = (n / scale, n % scale);
    let mut buf = [0u8; 40];
    let mut len = 0;
    if x.is_sign_negative() {
        buf[0] = b'-';
        len = 1;
    }
    // The integer part, then the fraction zero-padded to `decimals` digits.
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut v = int;
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let int_digits = &digits[i..];
    buf[len..len + int_digits.len()].copy_from_slice(int_digits);
    len += int_digits.len();
    if decimals > 0 {
        buf[len] = b'.';
        len += 1;
        let mut v = frac;
        for at in (len..len + decimals).rev() {
            buf[at] = b'0' + (v % 10) as u8;
            v /= 10;
        }
        len += decimals;
    }
    Some((buf, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(x: f64) {
        for d in 0..=9 {
            assert_eq!(Fixed(x, d).to_string(), format!("{x:.d$}"), "{x:e} with {d} decimals");
            let mut pushed = String::from("<");
            Fixed(x, d).push_to(&mut pushed);
            assert_eq!(pushed, format!("<{x:.d$}"), "{x:e} with {d} decimals, pushed");
        }
    }

    #[test]
    fn as_std_writes_it() {
        for x in [0.0, -0.0, 0.5, 1.5, 2.5, -2.5, 0.125, 0.375, 1.005, 70.0, 71.245, 99.995, 0.000_05, -0.000_04] {
            check(x);
        }
        for x in [1e15, 4e15, 1e16, 1e300, 1e-300, f64::MAX, f64::MIN_POSITIVE, f64::NAN, f64::INFINITY] {
            check(x);
            check(-x);
        }
        // Random bit patterns of every magnitude, and values near decimal ties.
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..200_000 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let x = f64::from_bits(s);
            if x.abs() < 1e17 && x.abs() > 1e-12 {
                check(x);
            }
            let tie = (s % 2_000_000) as f64 / 1_000.0 + 0.000_5;
            check(tie);
            check(-tie);
            check((s % 100_000) as f64 / 100.0);
        }
        // Fast where it should be: an RSI value is not handed to std.
        assert!(fast(71.254_9, 2).is_some());
        // Width and alignment flags apply.
        assert_eq!(format!("{:>8}", Fixed(1.5, 1)), "     1.5");
        assert_eq!(format!("{:<6}|", Fixed(1e300, 1)).len(), format!("{:.1}|", 1e300).len());
    }
}
