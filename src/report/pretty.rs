//! serde_json's pretty layout (`serde_json::to_vec_pretty`: two spaces a level, `": "`
//! between a key and its value), byte for byte, written straight into a byte buffer.
//!
//! The JSON report writes a few kilobytes a connection, hundreds of megabytes for a
//! large capture, most of it keys and short strings. serde_json escapes a string one
//! byte at a time through a table and hands every piece (a quote, a colon, an indent)
//! to its writer on its own; here a string with nothing to escape (a key always, a
//! value nearly always) is tested and copied eight bytes at a time, and the layout's
//! pieces go into the buffer in line. Numbers are written by serde_json's own
//! formatter, so they read the same.

use std::fmt;

use serde::ser::{self, Serialize};
use serde_json::ser::{CompactFormatter, Formatter};

type Error = serde_json::Error;
type Result<T = ()> = std::result::Result<T, Error>;

/// Appends `value` to `out` as `serde_json::to_vec_pretty` writes it when it sits
/// `depth` levels deep in a document (0 for a whole document): the lines after its
/// first are indented by `depth` levels.
pub fn write_at<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T, depth: usize) -> Result {
    value.serialize(&mut Serializer { out, depth })
}

/// The serializer: the buffer and the depth of the value being written.
pub struct Serializer<'a> {
    out: &'a mut Vec<u8>,
    depth: usize,
}

impl Serializer<'_> {
    /// A comma, a line break and the indent of 32 levels (a line of 31 levels or fewer
    /// is cut from its first 64 or 65 bytes).
    const BREAK: &'static [u8; 66] =
        b",\n                                                                ";

    /// A line break (after a comma unless `first`) and the current level's indent.
    #[inline]
    fn line(&mut self, first: bool) {
        let from = usize::from(first);
        let to = 2 + 2 * self.depth;
        if to <= from + 64 {
            // A copy of fixed size (a few vector moves, not a call), cut to length.
            let len = self.out.len() + to - from;
            self.out.extend_from_slice(&Self::BREAK[from..from + 64]);
            self.out.truncate(len);
        } else {
            self.out.extend_from_slice(&Self::BREAK[from..2]);
            (0..self.depth).for_each(|_| self.out.extend_from_slice(b"  "));
        }
    }

    /// Opens an object or array (`open` its bracket); `empty` closes it at once, as
    /// serde_json does when it is told the length is 0.
    #[inline]
    fn open(&mut self, open: u8, close: u8, empty: bool) -> Compound<'_, Self> {
        self.out.push(open);
        if empty {
            self.out.push(close);
        } else {
            self.depth += 1;
        }
        Compound {
            ser: self,
            close,
            first: true,
            closed: empty,
            variant: false,
        }
    }

    /// `{`, then `variant` as the first key: what an enum's variant with fields opens
    /// with.
    fn open_variant(&mut self, variant: &str) {
        self.out.push(b'{');
        self.depth += 1;
        self.line(true);
        string(self.out, variant);
        self.out.extend_from_slice(b": ");
    }

    /// Closes what [`Serializer::open_variant`] opened.
    fn close_variant(&mut self) {
        self.depth -= 1;
        self.line(true);
        self.out.push(b'}');
    }

    #[inline]
    fn number(&mut self, write: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>) -> Result {
        write(self.out).map_err(Error::io)
    }
}

/// A string, quoted, escaped as serde_json escapes it: `"` and `\` with a backslash,
/// control characters as `\b \t \n \f \r` or `\u00XX` (lower-case hex), nothing else.
/// Read and copied eight bytes at a time, each word tested for a byte to escape at once.
#[inline]
fn string(out: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    out.reserve(b.len() + 10);
    out.push(b'"');
    let start = out.len();
    let mut words = b.chunks_exact(8);
    for w in &mut words {
        let w: [u8; 8] = w.try_into().expect("eight bytes");
        if to_escape(u64::from_le_bytes(w)) {
            out.truncate(start);
            return escaped(out, b);
        }
        out.extend_from_slice(&w);
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        // The last bytes as one word padded with spaces (nothing to escape); all eight
        // copied and the padding cut off, a copy of fixed size.
        let w = tail(rest);
        if to_escape(w) {
            out.truncate(start);
            return escaped(out, b);
        }
        let len = out.len() + rest.len();
        out.extend_from_slice(&w.to_le_bytes());
        out.truncate(len);
    }
    out.push(b'"');
}

/// The bytes of `rest` (fewer than eight) as the low bytes of a word, spaces above
/// them: read as two loads of 4, 2 or 1 bytes that overlap (the bytes they share are
/// the same), no byte at a time.
#[inline]
fn tail(rest: &[u8]) -> u64 {
    const SPACES: u64 = u64::MAX / 255 * 0x20;
    let n = rest.len();
    debug_assert!((1..8).contains(&n));
    let (lo, hi, width) = if n >= 4 {
        let word = |at: usize| u64::from(u32::from_le_bytes(rest[at..at + 4].try_into().unwrap()));
        (word(0), word(n - 4), 4)
    } else if n >= 2 {
        let word = |at: usize| u64::from(u16::from_le_bytes(rest[at..at + 2].try_into().unwrap()));
        (word(0), word(n - 2), 2)
    } else {
        (u64::from(rest[0]), u64::from(rest[0]), 1)
    };
    let bytes = lo | hi << (8 * (n - width));
    let mask = (1u64 << (8 * n)) - 1;
    bytes | SPACES & !mask
}

/// Whether one of the eight bytes of `w` is one JSON escapes: below 0x20, `"` or `\`.
/// Each test is "has a byte less than n" on the word (below 0x20; equal to a byte is
/// below 1 once that byte is xor-ed away): exact as a yes or no for the word.
#[inline]
fn to_escape(w: u64) -> bool {
    const ONES: u64 = u64::MAX / 255;
    const HIGH: u64 = ONES * 0x80;
    let below = |w: u64, n: u64| w.wrapping_sub(ONES * n) & !w & HIGH;
    let control = below(w, 0x20);
    let quote = below(w ^ (ONES * u64::from(b'"')), 1);
    let backslash = below(w ^ (ONES * u64::from(b'\\')), 1);
    control | quote | backslash != 0
}

/// The rest of [`string`] for a string with something to escape: byte by byte, and
/// the closing quote.
#[cold]
fn escaped(out: &mut Vec<u8>, b: &[u8]) {
    escape(out, b);
    out.push(b'"');
}

/// `b` escaped (no quotes).
fn escape(out: &mut Vec<u8>, b: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &c in b {
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x09 => out.extend_from_slice(b"\\t"),
            0x0a => out.extend_from_slice(b"\\n"),
            0x0c => out.extend_from_slice(b"\\f"),
            0x0d => out.extend_from_slice(b"\\r"),
            0..0x20 => {
                out.extend_from_slice(b"\\u00");
                out.extend_from_slice(&[HEX[usize::from(c >> 4)], HEX[usize::from(c & 0xf)]]);
            }
            _ => out.push(c),
        }
    }
}

/// What `collect_str` writes through: the displayed text escaped piece by piece as it
/// comes, without a `String` of its own.
struct Escaping<'a>(&'a mut Vec<u8>);

impl fmt::Write for Escaping<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let b = s.as_bytes();
        if b.iter().any(|&c| c < 0x20 || c == b'"' || c == b'\\') {
            escape(self.0, b);
        } else {
            self.0.extend_from_slice(b);
        }
        Ok(())
    }
}

/// The integer methods of a serializer but the 64- and 128-bit ones: each widened to
/// 64 bits, as serde_json writes them.
macro_rules! narrow_integers {
    () => {
        fn serialize_i8(self, v: i8) -> Result {
            self.serialize_i64(v.into())
        }

        fn serialize_i16(self, v: i16) -> Result {
            self.serialize_i64(v.into())
        }

        fn serialize_i32(self, v: i32) -> Result {
            self.serialize_i64(v.into())
        }

        fn serialize_u8(self, v: u8) -> Result {
            self.serialize_u64(v.into())
        }

        fn serialize_u16(self, v: u16) -> Result {
            self.serialize_u64(v.into())
        }

        fn serialize_u32(self, v: u32) -> Result {
            self.serialize_u64(v.into())
        }
    };
}

impl<'s, 'a> ser::Serializer for &'s mut Serializer<'a> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Compound<'s, Serializer<'a>>;
    type SerializeTuple = Compound<'s, Serializer<'a>>;
    type SerializeTupleStruct = Compound<'s, Serializer<'a>>;
    type SerializeTupleVariant = Compound<'s, Serializer<'a>>;
    type SerializeMap = Compound<'s, Serializer<'a>>;
    type SerializeStruct = Compound<'s, Serializer<'a>>;
    type SerializeStructVariant = Compound<'s, Serializer<'a>>;

    #[inline]
    fn serialize_bool(self, v: bool) -> Result {
        self.out
            .extend_from_slice(if v { b"true" } else { b"false" });
        Ok(())
    }

    narrow_integers!();

    #[inline]
    fn serialize_i64(self, v: i64) -> Result {
        self.number(|w| CompactFormatter.write_i64(w, v))
    }

    fn serialize_i128(self, v: i128) -> Result {
        self.number(|w| CompactFormatter.write_i128(w, v))
    }

    #[inline]
    fn serialize_u64(self, v: u64) -> Result {
        self.number(|w| CompactFormatter.write_u64(w, v))
    }

    fn serialize_u128(self, v: u128) -> Result {
        self.number(|w| CompactFormatter.write_u128(w, v))
    }

    fn serialize_f32(self, v: f32) -> Result {
        if !v.is_finite() {
            return self.serialize_unit();
        }
        self.number(|w| CompactFormatter.write_f32(w, v))
    }

    fn serialize_f64(self, v: f64) -> Result {
        if !v.is_finite() {
            return self.serialize_unit();
        }
        self.number(|w| CompactFormatter.write_f64(w, v))
    }

    fn serialize_char(self, v: char) -> Result {
        self.serialize_str(v.encode_utf8(&mut [0; 4]))
    }

    #[inline]
    fn serialize_str(self, v: &str) -> Result {
        string(self.out, v);
        Ok(())
    }

    fn serialize_bytes(self, v: &[u8]) -> Result {
        use ser::SerializeSeq;
        let mut seq = self.serialize_seq(Some(v.len()))?;
        v.iter().try_for_each(|b| seq.serialize_element(b))?;
        seq.end()
    }

    #[inline]
    fn serialize_none(self) -> Result {
        self.serialize_unit()
    }

    #[inline]
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result {
        v.serialize(self)
    }

    #[inline]
    fn serialize_unit(self) -> Result {
        self.out.extend_from_slice(b"null");
        Ok(())
    }

    fn serialize_unit_struct(self, _: &'static str) -> Result {
        self.serialize_unit()
    }

    #[inline]
    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Result {
        self.serialize_str(variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, v: &T) -> Result {
        v.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        v: &T,
    ) -> Result {
        self.open_variant(variant);
        v.serialize(&mut *self)?;
        self.close_variant();
        Ok(())
    }

    #[inline]
    fn serialize_seq(self, len: Option<usize>) -> Result<Self::SerializeSeq> {
        Ok(self.open(b'[', b']', len == Some(0)))
    }

    fn serialize_tuple(self, len: usize) -> Result<Self::SerializeTuple> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_struct(
        self,
        _: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleStruct> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleVariant> {
        self.open_variant(variant);
        let mut fields = self.open(b'[', b']', len == 0);
        fields.variant = true;
        Ok(fields)
    }

    #[inline]
    fn serialize_map(self, len: Option<usize>) -> Result<Self::SerializeMap> {
        Ok(self.open(b'{', b'}', len == Some(0)))
    }

    #[inline]
    fn serialize_struct(self, _: &'static str, len: usize) -> Result<Self::SerializeStruct> {
        self.serialize_map(Some(len))
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStructVariant> {
        self.open_variant(variant);
        let mut fields = self.open(b'{', b'}', len == 0);
        fields.variant = true;
        Ok(fields)
    }

    fn collect_str<T: fmt::Display + ?Sized>(self, v: &T) -> Result {
        use fmt::Write;
        self.out.push(b'"');
        write!(Escaping(self.out), "{v}").map_err(ser::Error::custom)?;
        self.out.push(b'"');
        Ok(())
    }
}

/// An object or array being written.
pub struct Compound<'s, S> {
    ser: &'s mut S,
    /// `]` or `}`.
    close: u8,
    /// Whether nothing has been written in it yet.
    first: bool,
    /// Whether it was closed as it was opened (a length of 0 given).
    closed: bool,
    /// Whether it is an enum variant's fields, inside the object
    /// [`Serializer::open_variant`] opened.
    variant: bool,
}

impl Compound<'_, Serializer<'_>> {
    #[inline]
    fn element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result {
        self.ser.line(self.first);
        self.first = false;
        v.serialize(&mut *self.ser)
    }

    #[inline]
    fn key<T: Serialize + ?Sized>(&mut self, k: &T) -> Result {
        self.ser.line(self.first);
        self.first = false;
        k.serialize(MapKey(self.ser.out))
    }

    #[inline]
    fn value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result {
        self.ser.out.extend_from_slice(b": ");
        v.serialize(&mut *self.ser)
    }

    #[inline]
    fn finish(self) {
        if !self.closed {
            self.ser.depth -= 1;
            if !self.first {
                self.ser.line(true);
            }
            self.ser.out.push(self.close);
        }
        if self.variant {
            self.ser.close_variant();
        }
    }
}

/// The four traits of sequences (lists, tuples, tuple structs, tuple variants): each
/// written element by element, closed the same way.
macro_rules! sequence {
    ($($trait:ident::$method:ident),*) => {$(
        impl ser::$trait for Compound<'_, Serializer<'_>> {
            type Ok = ();
            type Error = Error;

            #[inline]
            fn $method<T: Serialize + ?Sized>(&mut self, v: &T) -> Result {
                self.element(v)
            }

            #[inline]
            fn end(self) -> Result {
                self.finish();
                Ok(())
            }
        }
    )*};
}

sequence!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

impl ser::SerializeMap for Compound<'_, Serializer<'_>> {
    type Ok = ();
    type Error = Error;

    #[inline]
    fn serialize_key<T: Serialize + ?Sized>(&mut self, k: &T) -> Result {
        self.key(k)
    }

    #[inline]
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result {
        self.value(v)
    }

    #[inline]
    fn end(self) -> Result {
        self.finish();
        Ok(())
    }
}

impl ser::SerializeStruct for Compound<'_, Serializer<'_>> {
    type Ok = ();
    type Error = Error;

    #[inline]
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, v: &T) -> Result {
        self.ser.line(self.first);
        self.first = false;
        string(self.ser.out, key);
        self.value(v)
    }

    #[inline]
    fn end(self) -> Result {
        self.finish();
        Ok(())
    }
}

impl ser::SerializeStructVariant for Compound<'_, Serializer<'_>> {
    type Ok = ();
    type Error = Error;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, v: &T) -> Result {
        ser::SerializeStruct::serialize_field(self, key, v)
    }

    fn end(self) -> Result {
        self.finish();
        Ok(())
    }
}

/// A map's key, which JSON has as a string: strings and unit variants as they are,
/// numbers, booleans and characters quoted (as serde_json writes them), anything else
/// an error.
struct MapKey<'a>(&'a mut Vec<u8>);

impl MapKey<'_> {
    fn quoted(self, write: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>) -> Result {
        self.0.push(b'"');
        write(self.0).map_err(Error::io)?;
        self.0.push(b'"');
        Ok(())
    }
}

fn not_a_string() -> Error {
    ser::Error::custom("key must be a string")
}

impl ser::Serializer for MapKey<'_> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = ser::Impossible<(), Error>;
    type SerializeTuple = ser::Impossible<(), Error>;
    type SerializeTupleStruct = ser::Impossible<(), Error>;
    type SerializeTupleVariant = ser::Impossible<(), Error>;
    type SerializeMap = ser::Impossible<(), Error>;
    type SerializeStruct = ser::Impossible<(), Error>;
    type SerializeStructVariant = ser::Impossible<(), Error>;

    #[inline]
    fn serialize_str(self, v: &str) -> Result {
        string(self.0, v);
        Ok(())
    }

    fn serialize_bool(self, v: bool) -> Result {
        self.quoted(|w| CompactFormatter.write_bool(w, v))
    }

    narrow_integers!();

    fn serialize_i64(self, v: i64) -> Result {
        self.quoted(|w| CompactFormatter.write_i64(w, v))
    }

    fn serialize_i128(self, v: i128) -> Result {
        self.quoted(|w| CompactFormatter.write_i128(w, v))
    }

    fn serialize_u64(self, v: u64) -> Result {
        self.quoted(|w| CompactFormatter.write_u64(w, v))
    }

    fn serialize_u128(self, v: u128) -> Result {
        self.quoted(|w| CompactFormatter.write_u128(w, v))
    }

    fn serialize_f32(self, v: f32) -> Result {
        if !v.is_finite() {
            return Err(not_a_string());
        }
        self.quoted(|w| CompactFormatter.write_f32(w, v))
    }

    fn serialize_f64(self, v: f64) -> Result {
        if !v.is_finite() {
            return Err(not_a_string());
        }
        self.quoted(|w| CompactFormatter.write_f64(w, v))
    }

    fn serialize_char(self, v: char) -> Result {
        self.serialize_str(v.encode_utf8(&mut [0; 4]))
    }

    fn serialize_bytes(self, _: &[u8]) -> Result {
        Err(not_a_string())
    }

    fn serialize_none(self) -> Result {
        Err(not_a_string())
    }

    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result {
        Err(not_a_string())
    }

    fn serialize_unit(self) -> Result {
        Err(not_a_string())
    }

    fn serialize_unit_struct(self, _: &'static str) -> Result {
        Err(not_a_string())
    }

    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Result {
        self.serialize_str(variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, v: &T) -> Result {
        v.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result {
        Err(not_a_string())
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq> {
        Err(not_a_string())
    }

    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple> {
        Err(not_a_string())
    }

    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct> {
        Err(not_a_string())
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant> {
        Err(not_a_string())
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap> {
        Err(not_a_string())
    }

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct> {
        Err(not_a_string())
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant> {
        Err(not_a_string())
    }

    fn collect_str<T: fmt::Display + ?Sized>(self, v: &T) -> Result {
        use fmt::Write;
        self.0.push(b'"');
        write!(Escaping(self.0), "{v}").map_err(ser::Error::custom)?;
        self.0.push(b'"');
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Serialize;

    use super::write_at;

    #[derive(Serialize)]
    enum Variant {
        Unit,
        Newtype(u8),
        Tuple(i32, &'static str),
        NoFields(),
        Struct { a: Option<f64>, b: Vec<u8> },
        Empty {},
    }

    #[derive(Serialize)]
    #[serde(tag = "kind", rename_all = "snake_case")]
    enum Tagged {
        One { n: u16 },
        Two(Inner),
    }

    #[derive(Serialize)]
    struct Inner {
        x: i64,
        #[serde(skip_serializing_if = "Option::is_none")]
        y: Option<char>,
    }

    #[derive(Serialize)]
    struct Outer {
        name: String,
        #[serde(flatten)]
        inner: Inner,
        variants: Vec<Variant>,
        tagged: Vec<Tagged>,
        by_number: BTreeMap<u32, bool>,
        by_name: BTreeMap<String, Vec<()>>,
        floats: [f64; 6],
        small: (f32, i8, u128, i128),
        unit: (),
        addr: std::net::IpAddr,
        bytes: &'static [u8],
        shown: Shown,
    }

    /// Serialized through `collect_str`.
    struct Shown;

    impl Serialize for Shown {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_str(&format_args!("a\"b{}\\c\u{1}é", 7))
        }
    }

    /// Every byte below 0x80, then some that are not ASCII.
    fn every_char() -> String {
        (0u8..0x80).map(char::from).chain("é€😀".chars()).collect()
    }

    fn sample() -> Outer {
        Outer {
            name: every_char(),
            inner: Inner {
                x: -5,
                y: Some('\u{1f}'),
            },
            variants: vec![
                Variant::Unit,
                Variant::Newtype(3),
                Variant::Tuple(-1, "t\t"),
                Variant::NoFields(),
                Variant::Struct {
                    a: Some(0.1),
                    b: vec![],
                },
                Variant::Struct {
                    a: None,
                    b: vec![1, 2],
                },
                Variant::Empty {},
            ],
            tagged: vec![Tagged::One { n: 9 }, Tagged::Two(Inner { x: 1, y: None })],
            by_number: [(1, true), (20, false)].into(),
            by_name: [(every_char(), vec![(), ()]), (String::new(), vec![])].into(),
            floats: [0.0, -0.0, 1e300, 0.3, f64::NAN, f64::NEG_INFINITY],
            small: (1.5, -128, u64::MAX.into(), i64::MIN.into()),
            unit: (),
            addr: "2001:db8::1".parse().unwrap(),
            bytes: b"\x00\xff",
            shown: Shown,
        }
    }

    #[test]
    fn writes_what_serde_json_writes_pretty() {
        let v = sample();
        let mut out = Vec::new();
        write_at(&mut out, &v, 0).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            serde_json::to_string_pretty(&v).unwrap()
        );
        let mut json = serde_json::to_value(&v).unwrap();
        // Past the indent one slice holds, and empty lists and objects between.
        for d in 0..40 {
            json = if d % 2 == 0 {
                serde_json::json!([json, d, {}])
            } else {
                serde_json::json!({"k": json, "n": []})
            };
        }
        let mut out = Vec::new();
        write_at(&mut out, &json, 0).unwrap();
        assert!(out == serde_json::to_vec_pretty(&json).unwrap());
    }

    /// A value inside `.0` lists of one element.
    struct Nested<'a>(usize, &'a Outer);

    impl Serialize for Nested<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            match self.0 {
                0 => self.1.serialize(s),
                d => [Nested(d - 1, self.1)].serialize(s),
            }
        }
    }

    #[test]
    fn a_value_written_deep_reads_as_it_does_inside_its_document() {
        let v = sample();
        for depth in [1, 2, 5, 33] {
            let whole = serde_json::to_string_pretty(&Nested(depth, &v)).unwrap();
            let (open, close) = (whole.find('{').unwrap(), whole.rfind('}').unwrap());
            let mut out = Vec::new();
            write_at(&mut out, &v, depth).unwrap();
            assert_eq!(
                String::from_utf8(out).unwrap(),
                whole[open..=close],
                "{depth}"
            );
        }
    }

    #[test]
    fn strings_of_every_length_escape_as_serde_json_escapes_them() {
        // Characters to escape at every place of words and of the last bytes after them.
        let alphabet = [
            'a', '"', '\\', '\n', '\u{1}', '\u{1f}', ' ', '~', '\u{7f}', 'é', '😀',
        ];
        let mut state = 1u64;
        for len in 0..=40 {
            for _ in 0..200 {
                let s: String = (0..len)
                    .map(|_| {
                        state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                        // Mostly plain text, now and then a character to escape.
                        let k = (state >> 33) as usize % (alphabet.len() * 4);
                        alphabet.get(k).copied().unwrap_or('x')
                    })
                    .collect();
                let mut out = Vec::new();
                write_at(&mut out, &s, 0).unwrap();
                assert_eq!(
                    String::from_utf8(out).unwrap(),
                    serde_json::to_string(&s).unwrap()
                );
            }
        }
    }

    #[test]
    fn keys_that_are_not_strings_are_refused_as_serde_json_refuses_them() {
        let map: BTreeMap<Vec<u8>, u8> = [(vec![1], 1)].into();
        assert!(serde_json::to_vec_pretty(&map).is_err());
        assert!(write_at(&mut Vec::new(), &map, 0).is_err());
    }
}
