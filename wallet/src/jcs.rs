//! Canonical JSON, RFC 8785 (JSON Canonicalization Scheme, "JCS").
//!
//! The lineage manifest is hashed and signed over these bytes, so any reader in any language
//! that implements RFC 8785 gets the same hash: object members sorted by their names' UTF-16
//! code units, no whitespace, strings escaped as ECMAScript's `JSON.stringify` does, and numbers
//! written as ECMAScript writes an IEEE 754 double.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::{Map, Number, Value};

/// Why a value has no canonical form.
#[derive(Debug, thiserror::Error)]
pub enum CanonicalError {
    /// NaN and the infinities are not JSON.
    #[error("{0} is not a finite number and has no JSON form")]
    NotFinite(f64),
    /// RFC 8785 reads every number as a double; an integer beyond 2^53 would silently change,
    /// so it is refused instead.
    #[error(
        "the integer {0} is beyond 2^53, the range JSON numbers (IEEE 754 doubles) hold exactly"
    )]
    InexactInteger(String),
    #[error("the value does not serialise to JSON: {0}")]
    Serialize(#[from] serde_json::Error),
}

/// The canonical bytes of any serialisable value.
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CanonicalError> {
    Ok(to_string(value)?.into_bytes())
}

/// The canonical text of any serialisable value.
pub fn to_string<T: Serialize + ?Sized>(value: &T) -> Result<String, CanonicalError> {
    let value = serde_json::to_value(value)?;
    value_to_string(&value)
}

/// The canonical text of a JSON value.
pub fn value_to_string(value: &Value) -> Result<String, CanonicalError> {
    let mut out = String::new();
    write_value(&mut out, value)?;
    Ok(out)
}

fn write_value(out: &mut String, value: &Value) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => out.push_str(&number_to_string(n)?),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item)?;
            }
            out.push(']');
        }
        Value::Object(map) => write_object(out, map)?,
    }
    Ok(())
}

fn write_object(out: &mut String, map: &Map<String, Value>) -> Result<(), CanonicalError> {
    let mut members: Vec<(&String, &Value)> = map.iter().collect();
    // UTF-16 code units, not UTF-8 bytes or code points: the two orders differ for names with
    // characters above U+FFFF next to ones in U+E000..U+FFFF.
    members.sort_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
    out.push('{');
    for (i, (name, value)) in members.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(out, name);
        out.push(':');
        write_value(out, value)?;
    }
    out.push('}');
    Ok(())
}

/// A JSON string as `JSON.stringify` writes it: the two-character escapes where they exist,
/// `\u00xx` (lower-case hex) for the other control characters, everything else as is.
fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn number_to_string(n: &Number) -> Result<String, CanonicalError> {
    if let Some(i) = n.as_i64() {
        return integer_to_string(i128::from(i));
    }
    if let Some(u) = n.as_u64() {
        return integer_to_string(i128::from(u));
    }
    match n.as_f64() {
        Some(f) => format_number(f),
        // Unreachable without serde_json's arbitrary_precision, which this crate does not use.
        None => Err(CanonicalError::InexactInteger(n.to_string())),
    }
}

/// Integers up to 2^53 in magnitude: every one is a distinct double, written back as the same
/// digits. Beyond that, ECMAScript's shortest form can name another integer (2^60 is written
/// 1152921504606847000), so a reader would get a different number; refused.
fn integer_to_string(i: i128) -> Result<String, CanonicalError> {
    if i.unsigned_abs() > 1 << 53 {
        return Err(CanonicalError::InexactInteger(i.to_string()));
    }
    format_number(i as f64)
}

/// A double as ECMAScript's `Number.prototype.toString` writes it (ECMA-262, 7.1.12.1), which
/// is what RFC 8785 prescribes: the shortest digits that read back to the same double, in
/// plain notation from 1e-6 up to 1e21 and in exponent notation (`1e+21`, `1e-7`) outside.
pub fn format_number(f: f64) -> Result<String, CanonicalError> {
    if !f.is_finite() {
        return Err(CanonicalError::NotFinite(f));
    }
    if f == 0.0 {
        // Minus zero too.
        return Ok("0".to_string());
    }
    // Ryu gives the shortest digits that read back to the same double and, when two such
    // strings are equally close, the even one, as ECMA-262 asks (RFC 8785's "round to even"
    // example, 1424953923781206.2). Rust's own `{:e}` rounds that tie the other way.
    let mut buffer = ryu::Buffer::new();
    let text = buffer.format_finite(f.abs());
    let (mantissa, exponent) = match text.split_once('e') {
        Some((m, e)) => (
            m,
            e.parse::<i32>().map_err(|_| CanonicalError::NotFinite(f))?,
        ),
        None => (text, 0),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all = format!("{int_part}{frac_part}");
    let all = all.trim_start_matches('0');
    let digits = all.trim_end_matches('0');
    // The value is digits x 10^scale.
    let scale = exponent - frac_part.len() as i32 + (all.len() - digits.len()) as i32;
    let k = digits.len() as i32;
    // ECMA-262's n: the decimal point sits after n digits.
    let n = scale + k;
    let mut out = String::new();
    if f < 0.0 {
        out.push('-');
    }
    if k <= n && n <= 21 {
        out.push_str(digits);
        out.extend(std::iter::repeat_n('0', (n - k) as usize));
    } else if 0 < n && n <= 21 {
        let (int, frac) = digits.split_at(n as usize);
        out.push_str(int);
        out.push('.');
        out.push_str(frac);
    } else if -6 < n && n <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-n) as usize));
        out.push_str(digits);
    } else {
        let (first, rest) = digits.split_at(1);
        out.push_str(first);
        if !rest.is_empty() {
            out.push('.');
            out.push_str(rest);
        }
        let e = n - 1;
        let _ = write!(out, "e{}{}", if e < 0 { '-' } else { '+' }, e.abs());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(text: &str) -> String {
        let value: Value = serde_json::from_str(text).expect("test JSON parses");
        value_to_string(&value).expect("canonical form")
    }

    /// RFC 8785, Appendix B: IEEE 754 doubles and their canonical text.
    #[test]
    fn rfc8785_appendix_b_numbers() {
        let cases: &[(u64, &str)] = &[
            (0x0000000000000000, "0"),
            (0x8000000000000000, "0"),
            (0x0000000000000001, "5e-324"),
            (0x8000000000000001, "-5e-324"),
            (0x7fefffffffffffff, "1.7976931348623157e+308"),
            (0xffefffffffffffff, "-1.7976931348623157e+308"),
            (0x4340000000000000, "9007199254740992"),
            (0xc340000000000000, "-9007199254740992"),
            (0x4430000000000000, "295147905179352830000"),
            (0x44b52d02c7e14af5, "9.999999999999997e+22"),
            (0x44b52d02c7e14af6, "1e+23"),
            (0x44b52d02c7e14af7, "1.0000000000000001e+23"),
            (0x444b1ae4d6e2ef4e, "999999999999999700000"),
            (0x444b1ae4d6e2ef4f, "999999999999999900000"),
            (0x444b1ae4d6e2ef50, "1e+21"),
            (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"),
            (0x3eb0c6f7a0b5ed8d, "0.000001"),
            (0x41b3de4355555553, "333333333.3333332"),
            (0x41b3de4355555554, "333333333.33333325"),
            (0x41b3de4355555555, "333333333.3333333"),
            (0x41b3de4355555556, "333333333.3333334"),
            (0x41b3de4355555557, "333333333.33333343"),
            (0xbecbf647612f3696, "-0.0000033333333333333333"),
            (0x43143ff3c1cb0959, "1424953923781206.2"),
        ];
        for &(bits, want) in cases {
            let got = format_number(f64::from_bits(bits)).expect("finite");
            assert_eq!(got, want, "{bits:016x}");
        }
        // Appendix B's NaN and Infinity have no JSON form.
        assert!(format_number(f64::from_bits(0x7fffffffffffffff)).is_err());
        assert!(format_number(f64::from_bits(0x7ff0000000000000)).is_err());
    }

    /// RFC 8785, section 3.2.2: the worked example of the whole transformation.
    #[test]
    fn rfc8785_sample() {
        let input = r#"{
          "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
          "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
          "literals": [null, true, false]
        }"#;
        assert_eq!(
            canon(input),
            r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
        );
    }

    /// RFC 8785, section 3.2.3: member names sorted by UTF-16 code units.
    #[test]
    fn rfc8785_sorting() {
        let input = r#"{
          "\u20ac": "Euro Sign",
          "\r": "Carriage Return",
          "\ufb33": "Hebrew Letter Dalet With Dagesh",
          "1": "One",
          "\ud83d\ude00": "Emoji: Grinning Face",
          "\u0080": "Control",
          "\u00f6": "Latin Small Letter O With Diaeresis"
        }"#;
        let value: Value = serde_json::from_str(&canon(input)).expect("reparses");
        // The canonical text keeps the order; read it back in order from the text itself.
        let text = canon(input);
        let order: Vec<&str> = [
            "Carriage Return",
            "One",
            "Control",
            "Latin Small Letter O With Diaeresis",
            "Euro Sign",
            "Emoji: Grinning Face",
            "Hebrew Letter Dalet With Dagesh",
        ]
        .to_vec();
        let positions: Vec<usize> = order
            .iter()
            .map(|v| text.find(v).expect("value present"))
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{text}");
        assert_eq!(value.as_object().map(|m| m.len()), Some(7));
        // UTF-8 byte order would put the emoji (F0 9F ...) after U+FB33 (EF AC B3); UTF-16 puts
        // its surrogates (D83D) before it.
        assert!(text.find('\u{1F600}') < text.find('\u{FB33}'));
    }

    #[test]
    fn string_escapes_follow_json_stringify() {
        let s = "\"\\\u{8}\u{c}\n\r\t\u{0}\u{1f}\u{7f}\u{2028}/é";
        let mut out = String::new();
        write_string(&mut out, s);
        assert_eq!(
            out,
            "\"\\\"\\\\\\b\\f\\n\\r\\t\\u0000\\u001f\u{7f}\u{2028}/é\""
        );
    }

    #[test]
    fn integers_must_be_exact_doubles() {
        assert_eq!(
            canon("[0, -0, 1, -1, 9007199254740993e0]"),
            "[0,0,1,-1,9007199254740992]"
        );
        assert_eq!(canon("[9007199254740992]"), "[9007199254740992]");
        // 2^60 is a double exactly, but ECMAScript would write it 1152921504606847000, which
        // reads back as another integer: refused like any integer beyond 2^53.
        let value: Value = serde_json::from_str("[1152921504606846976]").expect("parses");
        assert!(value_to_string(&value).is_err());
        assert_eq!(canon("[-9007199254740992]"), "[-9007199254740992]");
        let value: Value = serde_json::from_str("[9007199254740993]").expect("parses");
        assert!(matches!(
            value_to_string(&value),
            Err(CanonicalError::InexactInteger(_))
        ));
        let value = serde_json::json!([u64::MAX]);
        assert!(value_to_string(&value).is_err());
    }

    #[test]
    fn nested_objects_and_empty_containers() {
        assert_eq!(
            canon(r#"{"b":{"z":[],"a":{}},"a":[{"y":1,"x":2}]}"#),
            r#"{"a":[{"x":2,"y":1}],"b":{"a":{},"z":[]}}"#
        );
    }
}
