//! A fast path for reading flat JSON records: [`scan_object`] walks one object's members in one
//! pass and hands each key with a [`Cursor`] on its value to the caller, which reads the value as
//! a string, a number, null or a nested object, or leaves it to be skipped; the JSON grammar is
//! checked all along.
//!
//! It handles the common case only and says so with `None`: a string with an escape, invalid
//! UTF-8, nesting deeper than [`MAX_DEPTH`], or anything malformed. The caller then parses the
//! record with its general deserializer (sonic-rs), which also writes the error message, so
//! records and dead letters come out the same either way.
//!
//! Hand-written because a generic deserializer's per-token machinery was most of a market tick's
//! cost: sonic-rs through serde took about 4,400 instructions for a full 180-byte tick and 3,650
//! for the fields the pipeline uses; this takes about 2,700, every skipped value checked. Tests
//! compare the two on generated, corrupted and randomly edited records.

/// How deep nested objects and arrays may go before the fast path gives up.
pub const MAX_DEPTH: usize = 32;

/// Walks the JSON object that is the whole of `record` (surrounding whitespace allowed), calling
/// `member` with every key and a [`Cursor`] on its value, in order. A value `member` does not read
/// is skipped (and checked). None when the fast path cannot read the record (see the module docs)
/// or `member` returns None; the caller then falls back to a full parser.
pub fn scan_object<'a>(record: &'a [u8], member: impl FnMut(&'a str, &mut Cursor<'a>) -> Option<()>) -> Option<()> {
    // One SIMD pass for the record's UTF-8; strings are then slices of the checked text.
    let text = simdutf8::basic::from_utf8(record).ok()?;
    let mut c = Cursor { b: record, text, i: 0, depth: 0 };
    c.ws();
    c.object(member)?;
    c.ws();
    (c.i == record.len()).then_some(())
}

/// A position in a record, on a value the caller may read once (or leave to be skipped).
pub struct Cursor<'a> {
    b: &'a [u8],
    /// The same bytes, checked UTF-8.
    text: &'a str,
    i: usize,
    depth: usize,
}

/// Bytes `x` has below 0x20, equal to `"` or `\`, or at or above 0x80 (each flagged in its high
/// bit): what ends the plain part of a string. The usual SWAR tests (Hacker's Delight 6-1).
fn specials(x: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let below = x.wrapping_sub(ONES * 0x20) & !x & HIGH;
    below | zero(x ^ (ONES * u64::from(b'"'))) | zero(x ^ (ONES * u64::from(b'\\'))) | (x & HIGH)
}

/// Exact powers of ten: a decimal of at most 15 digits times or over one of these is correctly
/// rounded (both operands are exact doubles).
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20,
    1e21, 1e22,
];

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    /// Reads an object, handing each member to `member`; skips what `member` leaves unread.
    pub fn object(&mut self, mut member: impl FnMut(&'a str, &mut Cursor<'a>) -> Option<()>) -> Option<()> {
        if self.depth >= MAX_DEPTH {
            return None;
        }
        self.eat(b'{')?;
        self.depth += 1;
        self.ws();
        if self.eat(b'}').is_none() {
            loop {
                let key = self.string()?;
                self.ws();
                self.eat(b':')?;
                self.ws();
                let at = self.i;
                member(key, self)?;
                if self.i == at {
                    self.skip()?;
                }
                if self.closed(b'}')? {
                    break;
                }
            }
        }
        self.depth -= 1;
        Some(())
    }

    /// After an element: true at the closing `close` (read), false after a comma (read), None
    /// for anything else.
    fn closed(&mut self, close: u8) -> Option<bool> {
        self.ws();
        let c = self.peek()?;
        self.i += 1;
        if c == b',' {
            self.ws();
        }
        (c == b',' || c == close).then_some(c == close)
    }

    /// The value as a number (None for anything else, and for numbers beyond f64's range).
    pub fn number(&mut self) -> Option<f64> {
        let start = self.i;
        let negative = self.eat(b'-').is_some();
        // Digits into a mantissa while checking JSON's grammar:
        // -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?
        let (mut mantissa, mut digits, mut scale) = (0u64, 0u32, 0i32);
        let mut digit = |c: u8, fraction: bool| {
            if digits < 19 {
                mantissa = mantissa * 10 + u64::from(c - b'0');
                digits += u32::from(mantissa > 0);
                scale -= i32::from(fraction);
            } else if !fraction {
                scale += 1;
            }
        };
        match self.peek()? {
            b'0' => self.i += 1,
            b'1'..=b'9' => {
                while let Some(c @ b'0'..=b'9') = self.peek() {
                    digit(c, false);
                    self.i += 1;
                }
            }
            _ => return None,
        }
        if self.eat(b'.').is_some() {
            let from = self.i;
            while let Some(c @ b'0'..=b'9') = self.peek() {
                digit(c, true);
                self.i += 1;
            }
            if self.i == from {
                return None;
            }
        }
        let mut exponent = 0i32;
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            let sign = match self.peek()? {
                b'-' => -1,
                b'+' => 1,
                _ => 0,
            };
            if sign != 0 {
                self.i += 1;
            }
            let from = self.i;
            while let Some(c @ b'0'..=b'9') = self.peek() {
                exponent = exponent.saturating_mul(10).saturating_add(i32::from(c - b'0'));
                self.i += 1;
            }
            if self.i == from {
                return None;
            }
            exponent *= if sign < 0 { -1 } else { 1 };
        }
        let power = scale.saturating_add(exponent);
        // Clinger's fast path: exact when the mantissa and the power of ten are exact doubles.
        let value = if digits <= 15 && mantissa < (1 << 53) && power.unsigned_abs() <= 22 {
            let m = mantissa as f64;
            if power >= 0 { m * POW10[power as usize] } else { m / POW10[power.unsigned_abs() as usize] }
        } else {
            // The general, correctly rounded parser (JSON's number syntax is a subset of Rust's).
            return self.text.get(start..self.i)?.parse::<f64>().ok().filter(|v| v.is_finite());
        };
        Some(if negative { -value } else { value })
    }

    /// True (and the value read) if the value is `null`.
    pub fn null(&mut self) -> bool {
        self.literal(b"null").is_some()
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        self.b[self.i..].starts_with(word).then(|| self.i += word.len())
    }

    /// Skips one value, checking it.
    fn skip(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' => self.object(|_, _| Some(())),
            b'[' => self.array(),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => self.number().map(drop),
        }
    }

    fn array(&mut self) -> Option<()> {
        if self.depth >= MAX_DEPTH {
            return None;
        }
        self.eat(b'[')?;
        self.depth += 1;
        self.ws();
        if self.eat(b']').is_none() {
            loop {
                self.skip()?;
                if self.closed(b']')? {
                    break;
                }
            }
        }
        self.depth -= 1;
        Some(())
    }

    /// The value as a string without escapes or control characters, its text without the quotes
    /// (None for anything else).
    pub fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.i;
        let mut at = start;
        // Eight bytes at a time up to the first one that is not plain ASCII text.
        while let Some(word) = self.b.get(at..at + 8) {
            let flags = specials(u64::from_le_bytes(word.try_into().ok()?));
            if flags != 0 {
                at += (flags.trailing_zeros() / 8) as usize;
                break;
            }
            at += 8;
        }
        loop {
            match *self.b.get(at)? {
                b'"' => break,
                b'\\' | 0..0x20 => return None,
                _ => at += 1,
            }
        }
        self.i = at + 1;
        // Quotes are ASCII, so both ends are character boundaries.
        self.text.get(start..at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every member as (key, text of what it read): strings, numbers and nulls read, others skipped.
    fn members(text: &str) -> Option<Vec<(String, String)>> {
        let mut out = Vec::new();
        scan_object(text.as_bytes(), |k, c| {
            let read = match k {
                "s" => c.string()?.to_owned(),
                "n" => c.number()?.to_string(),
                "z" => c.null().to_string(),
                "o" => {
                    let mut inner = Vec::new();
                    c.object(|k, c| {
                        inner.push(format!("{k}={}", c.number()?));
                        Some(())
                    })?;
                    inner.join(",")
                }
                _ => "skipped".to_owned(),
            };
            out.push((k.to_owned(), read));
            Some(())
        })?;
        Some(out)
    }

    #[test]
    fn reads_members_and_skips_the_rest() {
        let m =
            members(r#" {"s": "x", "n":-1.5e+3,"c":[1,{"d":[]}],"o":{"p":2,"q":0.25},"g":true,"z":null} "#).unwrap();
        let want = [("s", "x"), ("n", "-1500"), ("c", "skipped"), ("o", "p=2,q=0.25"), ("g", "skipped"), ("z", "true")];
        assert_eq!(m, want.map(|(k, v)| (k.to_owned(), v.to_owned())));
        assert_eq!(members("{}").unwrap(), vec![]);
        assert_eq!(members(r#"{"é":"ü and a long tail of text"}"#).unwrap()[0].0, "é");
        assert_eq!(
            members(r#"{"s":"a string longer than eight bytes"}"#).unwrap()[0].1,
            "a string longer than eight bytes"
        );
    }

    #[test]
    fn numbers_round_as_the_standard_parser_does() {
        let texts = [
            "0",
            "-0",
            "1",
            "1978.86",
            "0.1",
            "2.16",
            "123456789012345",
            "1234567890123456789",
            "12345678901234567890123",
            "0.1000000000000000055511151231257827",
            "1e22",
            "1e23",
            "9007199254740993",
            "1.7976931348623157e308",
            "5e-324",
            "1E+2",
            "-2.5e-3",
            "1e-22",
            "123.456e7",
            "0.000001",
            "99999999999999999999",
        ];
        for text in texts {
            let mut c = Cursor { b: text.as_bytes(), text, i: 0, depth: 0 };
            let got = c.number();
            assert_eq!(got.map(f64::to_bits), text.parse::<f64>().ok().map(f64::to_bits), "{text}");
            assert_eq!(c.i, text.len());
        }
        let mut c = Cursor { b: b"1e400", text: "1e400", i: 0, depth: 0 };
        assert_eq!(c.number(), None);
    }

    #[test]
    fn declines_what_it_does_not_read() {
        let declined = [
            r#"{"a":"x\"y"}"#,
            "{\"a\":\"tab\tin\"}",
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":.5}"#,
            r#"{"a":+1}"#,
            r#"{"a":1e}"#,
            r#"{"a":-}"#,
            r#"{"a":tru}"#,
            r#"{"a":1,}"#,
            r#"{"a" 1}"#,
            r#"{"a":1"#,
            r#"{"a":1} x"#,
            r#"{"a":1}{"#,
            r#"[1]"#,
            r#"{a:1}"#,
            r#"{"a":[1,]}"#,
            r#"{"a":NaN}"#,
            r#"{"s":1}"#,
            r#"{"n":"1"}"#,
            "",
        ];
        for text in declined {
            assert!(members(text).is_none(), "{text}");
        }
        assert!(scan_object(b"{\"a\":\"\xff\"}", |_, _| Some(())).is_none());
        assert!(scan_object(b"{\"a\":\"long enough \xc3\x28 bad\"}", |_, _| Some(())).is_none());
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(members(&deep).is_none());
    }
}
