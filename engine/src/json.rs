//! A fast path for reading flat JSON records, in two forms:
//! - [`scan_object`] walks one object's members in one pass and hands each key with a [`Cursor`]
//!   on its value to the caller, which reads the value as a string, a number, null or a nested
//!   object, or leaves it to be skipped;
//! - a [`Cursor`] made with [`Cursor::new`] reads a record laid out as the caller expects it
//!   (keys in a known order, written without spaces, as serializers write them): literal bytes
//!   between values are compared, not parsed ([`Cursor::expect`]).
//!
//! And for writing, [`write_str`], [`write_f64`] and [`write_f32`]: the bytes serde_json writes for a string or
//! a number, for output types that write their JSON by hand (a decision: [`crate::job::Emitted`]).
//!
//! The JSON grammar is checked all along, skipped values included, and the UTF-8 of every string
//! (bytes outside strings must be ASCII anyway). Either form handles the common case only and
//! says so with `None`: a string with an escape, nesting deeper than [`MAX_DEPTH`], invalid
//! UTF-8, another layout, anything malformed. The caller then tries the next form, and in the end
//! its general deserializer (sonic-rs), which also writes the error message, so records and dead
//! letters come out the same either way.
//!
//! Hand-written because a generic deserializer's per-token machinery was most of a market tick's
//! cost: sonic-rs through serde took about 4,400 instructions for a full 180-byte tick and 3,650
//! for the fields the pipeline uses. Tests compare both forms with serde on generated, corrupted
//! and randomly edited records.

/// How deep nested objects and arrays may go before the fast path gives up.
pub const MAX_DEPTH: usize = 32;

/// Walks the JSON object that is the whole of `record` (surrounding whitespace allowed), calling
/// `member` with every key and a [`Cursor`] on its value, in order. A value `member` does not read
/// is skipped (and checked). None when the fast path cannot read the record (see the module docs)
/// or `member` returns None; the caller then falls back to a full parser.
pub fn scan_object<'a>(record: &'a [u8], member: impl FnMut(&'a [u8], &mut Cursor<'a>) -> Option<()>) -> Option<()> {
    let mut c = Cursor::new(record);
    c.object(member)?;
    c.end()
}

/// A position in a record, on a value the caller may read once (or leave to be skipped).
pub struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
    depth: usize,
}

/// Bit i set if byte i of `chunk` is below 0x20, `"` or `\\`, or at or above 0x80: what ends the
/// plain ASCII part of a string. SSE2 (every x86-64 has it): three compares and a mask for 16
/// bytes, where a byte loop was most of a market tick's string reading.
#[cfg(target_arch = "x86_64")]
fn specials16(chunk: &[u8; 16]) -> u32 {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_cmplt_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };
    // SAFETY: SSE2 is part of every x86-64 target, and the load reads the 16 bytes of `chunk`.
    #[allow(unsafe_code)]
    unsafe {
        let v = _mm_loadu_si128(chunk.as_ptr().cast::<__m128i>());
        let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
        let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
        // Signed: bytes at or above 0x80 are negative, so below 0x20 too.
        let low_or_high = _mm_cmplt_epi8(v, _mm_set1_epi8(0x20));
        _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, backslash), low_or_high)) as u32
    }
}

/// [`specials16`] elsewhere: the usual SWAR tests (Hacker's Delight 6-1) on two words.
#[cfg(not(target_arch = "x86_64"))]
fn specials16(chunk: &[u8; 16]) -> u32 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let word = |x: u64| {
        let zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
        let below = x.wrapping_sub(ONES * 0x20) & !x & HIGH;
        let flags = below | zero(x ^ (ONES * u64::from(b'"'))) | zero(x ^ (ONES * u64::from(b'\\'))) | (x & HIGH);
        // One bit per byte, in byte order: bit 7 of byte i to bit i.
        (0..8).fold(0u32, |m, i| m | (((flags >> (8 * i + 7)) & 1) as u32) << i)
    };
    let (lo, hi) = chunk.split_at(8);
    let [lo, hi] = [lo, hi].map(|h| u64::from_le_bytes(h.try_into().unwrap_or_default()));
    word(lo) | word(hi) << 8
}

/// Writes `s` as a JSON string, byte for byte as serde_json writes it. A string with nothing to
/// escape (no `"`, `\\` or control character) and all ASCII, as nearly every string of a decision
/// is, is checked 16 bytes at a time and copied whole; serde_json looks up every byte in a table.
/// Any other string is written by serde_json itself.
pub fn write_str(out: &mut String, s: &str) {
    let b = s.as_bytes();
    let mut plain = true;
    for chunk in b.chunks(16) {
        let flags = match chunk.first_chunk::<16>() {
            Some(c) => specials16(c),
            None => {
                // Padded with spaces, which are plain.
                let mut padded = [b' '; 16];
                padded[..chunk.len()].copy_from_slice(chunk);
                specials16(&padded)
            }
        };
        if flags != 0 {
            plain = false;
            break;
        }
    }
    if plain {
        out.reserve(b.len() + 2);
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        // A str is always serializable.
        out.push_str(&serde_json::to_string(s).unwrap_or_default());
    }
}

/// Writes `x` as serde_json writes an f64 (the shortest text that reads back as `x`; NaN and the
/// infinities as `null`).
pub fn write_f64(out: &mut String, x: f64) {
    // serde_json formats floats with zmij and writes the non-finite ones as null: the same calls
    // without serde's writer around them (which cost as much again as the formatting).
    if x.is_finite() {
        out.push_str(zmij::Buffer::new().format_finite(x));
    } else {
        out.push_str("null");
    }
}

/// Writes `x` as serde_json writes an f32 (the shortest text that reads back as the f32).
pub fn write_f32(out: &mut String, x: f32) {
    if x.is_finite() {
        out.push_str(zmij::Buffer::new().format_finite(x));
    } else {
        out.push_str("null");
    }
}

/// Exact powers of ten: an integer below 2^53 times or over one of these is correctly rounded (both
/// operands are exact doubles).
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20,
    1e21, 1e22,
];

impl<'a> Cursor<'a> {
    /// A cursor at the start of `record`'s first value (leading whitespace skipped).
    pub fn new(record: &'a [u8]) -> Self {
        let mut c = Cursor { b: record, i: 0, depth: 0 };
        c.ws();
        c
    }

    /// How many bytes of the record have been read.
    pub fn offset(&self) -> usize {
        self.i
    }

    /// Some if only whitespace is left.
    pub fn end(&mut self) -> Option<()> {
        self.ws();
        (self.i == self.b.len()).then_some(())
    }

    /// Reads `bytes` exactly as given (structure and keys of an expected layout), or None. The
    /// length is a constant, so the comparison compiles to a few word compares.
    #[inline(always)]
    pub fn expect<const N: usize>(&mut self, bytes: &[u8; N]) -> Option<()> {
        self.at(bytes).then(|| self.i += N)
    }

    /// True if the next bytes are `bytes` (nothing read).
    #[inline(always)]
    pub fn at<const N: usize>(&self, bytes: &[u8; N]) -> bool {
        self.b.get(self.i..self.i + N).is_some_and(|next| next == bytes)
    }

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
    pub fn object(&mut self, mut member: impl FnMut(&'a [u8], &mut Cursor<'a>) -> Option<()>) -> Option<()> {
        if self.depth >= MAX_DEPTH {
            return None;
        }
        self.eat(b'{')?;
        self.depth += 1;
        self.ws();
        if self.eat(b'}').is_none() {
            loop {
                let key = self.bytes()?;
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
        let b = self.b;
        let start = self.i;
        let mut i = start + usize::from(b.get(start) == Some(&b'-'));
        // JSON's grammar: -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?
        let (int_start, mut mantissa) = (i, 0u64);
        while let Some(d) = b.get(i).map(|c| c.wrapping_sub(b'0')).filter(|d| *d <= 9) {
            mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(d));
            i += 1;
        }
        let int_digits = i - int_start;
        if int_digits == 0 || (int_digits > 1 && b[int_start] == b'0') {
            return None;
        }
        let mut fraction = 0;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let from = i;
            while let Some(d) = b.get(i).map(|c| c.wrapping_sub(b'0')).filter(|d| *d <= 9) {
                mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(d));
                i += 1;
            }
            fraction = i - from;
            if fraction == 0 {
                return None;
            }
        }
        let mut general = false;
        if let Some(b'e' | b'E') = b.get(i) {
            i += 1;
            if let Some(b'-' | b'+') = b.get(i) {
                i += 1;
            }
            let from = i;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == from {
                return None;
            }
            general = true;
        }
        self.i = i;
        // Clinger's fast path: exact when the mantissa (at most 19 digits, so it did not wrap) and
        // the power of ten are exact doubles.
        if !general && int_digits + fraction <= 19 && mantissa < (1 << 53) && fraction <= 22 {
            let value = mantissa as f64 / POW10[fraction];
            return Some(if start == int_start { value } else { -value });
        }
        // The general, correctly rounded parser (JSON's number syntax is a subset of Rust's, and
        // all ASCII).
        let text = std::str::from_utf8(&b[start..i]).ok()?;
        text.parse::<f64>().ok().filter(|v| v.is_finite())
    }

    /// True (and the value read) if the value is `null`.
    pub fn null(&mut self) -> bool {
        self.expect(b"null").is_some()
    }

    /// Skips one value, checking it.
    pub fn skip(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.bytes().map(drop),
            b'{' => self.object(|_, _| Some(())),
            b'[' => self.array(),
            b't' => self.expect(b"true"),
            b'f' => self.expect(b"false"),
            b'n' => self.expect(b"null"),
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

    /// The value as a string without escapes or control characters: its text without the quotes
    /// (None for anything else).
    pub fn string(&mut self) -> Option<&'a str> {
        let text = self.bytes()?;
        // SAFETY: `bytes` returns only valid UTF-8 (all ASCII, or checked by `from_utf8`);
        // checking again was a tenth of a market tick's parse.
        #[allow(unsafe_code)]
        Some(unsafe { std::str::from_utf8_unchecked(text) })
    }

    /// Like [`Cursor::string`], as bytes (valid UTF-8): for callers that compare or parse them.
    pub fn bytes(&mut self) -> Option<&'a [u8]> {
        self.eat(b'"')?;
        let start = self.i;
        let mut at = start;
        let mut ascii = true;
        loop {
            // Sixteen bytes at a time up to the first one that is not plain ASCII text; the last
            // few bytes of a record (the last string's end) padded with zeros, which stop the scan.
            loop {
                let rest = self.b.get(at..)?;
                let flags = match rest.first_chunk::<16>() {
                    Some(chunk) => specials16(chunk),
                    None => {
                        let mut padded = [0; 16];
                        padded[..rest.len()].copy_from_slice(rest);
                        specials16(&padded)
                    }
                };
                if flags != 0 {
                    at += flags.trailing_zeros() as usize;
                    break;
                }
                at += 16;
            }
            match *self.b.get(at)? {
                b'"' => break,
                b'\\' | 0..0x20 => return None,
                0x80.. => ascii = false,
                _ => {}
            }
            at += 1;
        }
        let text = &self.b[start..at];
        // Only a string with a byte ≥ 0x80 can be invalid UTF-8.
        if !ascii {
            std::str::from_utf8(text).ok()?;
        }
        self.i = at + 1;
        Some(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_and_numbers_are_written_as_serde_json_writes_them() {
        let specials = ["\"", "\\", "\n", "\u{1}", "\u{1f}", "\u{7f}", "é", "€", "😀", " ", "/"];
        for len in 0..40 {
            let base: String = (0..len).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
            let mut cases = vec![base.clone()];
            for special in specials {
                for at in 0..=len {
                    cases.push(format!("{}{special}{}", &base[..at], &base[at..]));
                }
            }
            for case in cases {
                let mut out = String::from("x");
                write_str(&mut out, &case);
                assert_eq!(out[1..], serde_json::to_string(&case).unwrap(), "{case:?}");
            }
        }
        for x in [0.0, -0.0, 0.65, 1e300, -1e-300, 15.559_999_999_999_999, f64::NAN, f64::INFINITY, f64::MIN_POSITIVE] {
            let mut out = String::new();
            write_f64(&mut out, x);
            assert_eq!(out, serde_json::to_string(&x).unwrap(), "{x:e}");
        }
    }

    /// Every member as (key, text of what it read): strings, numbers and nulls read, others skipped.
    fn members(text: &str) -> Option<Vec<(String, String)>> {
        let mut out = Vec::new();
        scan_object(text.as_bytes(), |k, c| {
            let read = match k {
                b"s" => c.string()?.to_owned(),
                b"n" => c.number()?.to_string(),
                b"z" => c.null().to_string(),
                b"o" => {
                    let mut inner = Vec::new();
                    c.object(|k, c| {
                        inner.push(format!("{}={}", String::from_utf8_lossy(k), c.number()?));
                        Some(())
                    })?;
                    inner.join(",")
                }
                _ => "skipped".to_owned(),
            };
            out.push((String::from_utf8(k.to_vec()).unwrap(), read));
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
    fn reads_an_expected_layout_and_nothing_else() {
        let read = |text: &[u8]| {
            let mut c = Cursor::new(text);
            c.expect(br#"{"a":"#)?;
            let a = c.string()?.to_owned();
            c.expect(br#","b":"#)?;
            let b = c.number()?;
            if c.at(br#","c":"#) {
                c.expect(br#","c":"#)?;
                c.skip()?;
            }
            c.expect(b"}")?;
            c.end()?;
            Some((a, b))
        };
        assert_eq!(read(b" {\"a\":\"x\xc3\xa9\",\"b\":-2.5} "), Some(("x\u{e9}".to_owned(), -2.5)));
        assert_eq!(read(br#"{"a":"x","b":1,"c":{"d":[true,null]}}"#), Some(("x".to_owned(), 1.0)));
        for other in [
            &br#"{"a": "x","b":1}"#[..],
            br#"{"b":1,"a":"x"}"#,
            br#"{"a":"x","b":1,"c":{"d":[tru]}}"#,
            br#"{"a":"x","b":1} 2"#,
            b"{\"a\":\"\xff\",\"b\":1}",
            br#"{"a":"x\n","b":1}"#,
        ] {
            assert_eq!(read(other), None, "{}", String::from_utf8_lossy(other));
        }
    }

    #[test]
    fn strings_of_every_length_and_where_they_end() {
        // Lengths around the 16-byte scan, a special byte at every position, the string last in
        // the record (its tail shorter than 16 bytes) or followed by more: as serde_json reads it.
        let specials: [&[u8]; 6] = [b"\"", b"\\", b"\n", b"\xc3", b"\xff", "\u{e9}".as_bytes()];
        for len in 0..40 {
            for special in [None].into_iter().chain(specials.map(Some)) {
                for at in 0..len.max(1) {
                    let mut text = vec![b'a'; len];
                    if let (Some(s), true) = (special, at < len) {
                        text.splice(at..at + 1, s.iter().copied());
                    }
                    for tail in [&b"}"[..], b",\"k\":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16]}"] {
                        let record = [&b"{\"s\":\""[..], &text, b"\"", tail].concat();
                        let mut read = None;
                        let fast = scan_object(&record, |key, c| {
                            if key == b"s" {
                                read = Some(c.string()?.to_owned());
                            }
                            Some(())
                        })
                        .and(read);
                        let serde = serde_json::from_slice::<serde_json::Value>(&record).ok();
                        match fast {
                            Some(fast) => assert_eq!(serde.as_ref().and_then(|v| v["s"].as_str()), Some(fast.as_str())),
                            // Declined: an early quote, an escape, a control byte or bad UTF-8 only.
                            None => {
                                assert!(at < len && special.is_some_and(|s| s != "\u{e9}".as_bytes()), "{record:?}")
                            }
                        }
                    }
                }
            }
        }
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
            let mut c = Cursor::new(text.as_bytes());
            let got = c.number();
            assert_eq!(got.map(f64::to_bits), text.parse::<f64>().ok().map(f64::to_bits), "{text}");
            assert_eq!(c.i, text.len());
        }
        let mut c = Cursor::new(b"1e400");
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
        assert!(scan_object(b"{\"k\xc3\":1}", |_, _| Some(())).is_none());
        assert!(scan_object(b"{\"a\":1\xc3\xa9}", |_, _| Some(())).is_none());
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(members(&deep).is_none());
    }
}
