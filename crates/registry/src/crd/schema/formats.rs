//! The `format`s Kubernetes checks on custom resources (kube-openapi's
//! strfmt registry, plus the integer and float widths). Unknown formats are
//! accepted without a check, as upstream does.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use base64::Engine as _;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    Int32,
    Int64,
    Float,
    Double,
    Byte,
    Date,
    DateTime,
    Duration,
    Uuid,
    Uuid3,
    Uuid4,
    Uuid5,
    Hostname,
    Ipv4,
    Ipv6,
    Cidr,
    Mac,
    Uri,
    Email,
    BsonObjectId,
    HexColor,
    RgbColor,
    Ssn,
    /// `password`, `isbn`, `creditcard`...: known names without a cheap check.
    Unchecked,
}

impl Format {
    /// `None` for formats Kubernetes does not know at all.
    pub(crate) fn parse(s: &str) -> Option<Format> {
        Some(match s {
            "int32" => Format::Int32,
            "int64" => Format::Int64,
            "float" => Format::Float,
            "double" => Format::Double,
            "byte" => Format::Byte,
            "date" => Format::Date,
            "date-time" | "datetime" => Format::DateTime,
            "duration" => Format::Duration,
            "uuid" => Format::Uuid,
            "uuid3" => Format::Uuid3,
            "uuid4" => Format::Uuid4,
            "uuid5" => Format::Uuid5,
            "hostname" => Format::Hostname,
            "ipv4" => Format::Ipv4,
            "ipv6" => Format::Ipv6,
            "cidr" => Format::Cidr,
            "mac" => Format::Mac,
            "uri" => Format::Uri,
            "email" => Format::Email,
            "bsonobjectid" => Format::BsonObjectId,
            "hexcolor" => Format::HexColor,
            "rgbcolor" => Format::RgbColor,
            "ssn" => Format::Ssn,
            "password" | "isbn" | "isbn10" | "isbn13" | "creditcard" => Format::Unchecked,
            _ => return None,
        })
    }

    /// The name used in error messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Format::Int32 => "int32",
            Format::Int64 => "int64",
            Format::Float => "float",
            Format::Double => "double",
            Format::Byte => "byte",
            Format::Date => "date",
            Format::DateTime => "date-time",
            Format::Duration => "duration",
            Format::Uuid => "uuid",
            Format::Uuid3 => "uuid3",
            Format::Uuid4 => "uuid4",
            Format::Uuid5 => "uuid5",
            Format::Hostname => "hostname",
            Format::Ipv4 => "ipv4",
            Format::Ipv6 => "ipv6",
            Format::Cidr => "cidr",
            Format::Mac => "mac",
            Format::Uri => "uri",
            Format::Email => "email",
            Format::BsonObjectId => "bsonobjectid",
            Format::HexColor => "hexcolor",
            Format::RgbColor => "rgbcolor",
            Format::Ssn => "ssn",
            Format::Unchecked => "string",
        }
    }

    /// Whether a string value is well-formed. Number formats accept any
    /// string (they constrain numbers).
    pub(crate) fn check_str(self, s: &str) -> bool {
        match self {
            Format::Int32 | Format::Int64 | Format::Float | Format::Double => true,
            Format::Unchecked => true,
            Format::Byte => base64::engine::general_purpose::STANDARD.decode(s).is_ok(),
            Format::Date => {
                chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok() && s.len() == 10
            }
            Format::DateTime => is_date_time(s),
            Format::Duration => is_duration(s),
            Format::Uuid => uuid_version(s).is_some(),
            Format::Uuid3 => uuid_version(s) == Some(b'3'),
            Format::Uuid4 => uuid_version(s) == Some(b'4'),
            Format::Uuid5 => uuid_version(s) == Some(b'5'),
            Format::Hostname => is_hostname(s),
            Format::Ipv4 => s.parse::<Ipv4Addr>().is_ok(),
            Format::Ipv6 => s.parse::<Ipv6Addr>().is_ok(),
            Format::Cidr => is_cidr(s),
            Format::Mac => is_mac(s),
            Format::Uri => is_request_uri(s),
            Format::Email => is_email(s),
            Format::BsonObjectId => s.len() == 24 && s.bytes().all(|b| b.is_ascii_hexdigit()),
            Format::HexColor => is_hex_color(s),
            Format::RgbColor => is_rgb_color(s),
            Format::Ssn => is_ssn(s),
        }
    }

    /// Whether a number fits the format's width.
    pub(crate) fn check_number(self, n: &serde_json::Number) -> bool {
        match self {
            Format::Int32 => n.as_i64().is_some_and(|i| i32::try_from(i).is_ok()),
            Format::Int64 => {
                n.as_i64().is_some()
                    || n.as_f64()
                        .is_some_and(|f| f.fract() == 0.0 && f.abs() < 9.2e18)
            }
            Format::Float => n
                .as_f64()
                .is_some_and(|f| f.is_finite() && f.abs() <= f64::from(f32::MAX)),
            _ => true,
        }
    }
}

fn is_date_time(s: &str) -> bool {
    if chrono::DateTime::parse_from_rfc3339(s).is_ok() {
        return true;
    }
    // strfmt also takes a local time without an offset.
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").is_ok()
}

/// Go durations (`1h30m`, `250ms`) and strfmt's spelled-out ones (`3 days`).
pub(crate) fn is_duration(s: &str) -> bool {
    parse_duration_secs(s).is_some()
}

/// The length of a duration in seconds, if `s` is one.
pub(crate) fn parse_duration_secs(s: &str) -> Option<f64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Some((num, unit)) = s.split_once(' ') {
        let n: f64 = num.trim().parse().ok()?;
        let unit = unit.trim().trim_end_matches('s');
        let mul = match unit {
            "n" | "nano" | "nanosecond" => 1e-9,
            "u" | "µ" | "micro" | "microsecond" => 1e-6,
            "m" | "milli" | "millisecond" => 1e-3,
            "" | "sec" | "second" => 1.0,
            "min" | "minute" => 60.0,
            "h" | "hr" | "hour" => 3600.0,
            "d" | "day" => 86400.0,
            "w" | "wk" | "week" => 604800.0,
            _ => return None,
        };
        return Some(n * mul);
    }
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Some(0.0);
    }
    let mut total = 0.0;
    let mut any = false;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_end == 0 {
            return None;
        }
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mul = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            "w" => 604800.0,
            _ => return None,
        };
        rest = &rest[unit_end..];
        total += n * mul;
        any = true;
    }
    any.then_some(if neg { -total } else { total })
}

fn uuid_version(s: &str) -> Option<u8> {
    let b = s.as_bytes();
    if b.len() != 36 {
        return None;
    }
    for (i, c) in b.iter().enumerate() {
        let dash = matches!(i, 8 | 13 | 18 | 23);
        if dash != (*c == b'-') || (!dash && !c.is_ascii_hexdigit()) {
            return None;
        }
    }
    Some(b[14])
}

fn is_hostname(s: &str) -> bool {
    if s.is_empty() || s.len() > 255 {
        return false;
    }
    let s = s.strip_suffix('.').unwrap_or(s);
    s.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    })
}

fn is_cidr(s: &str) -> bool {
    let Some((ip, bits)) = s.split_once('/') else {
        return false;
    };
    let Ok(bits) = bits.parse::<u8>() else {
        return false;
    };
    match ip.parse::<IpAddr>() {
        Ok(IpAddr::V4(_)) => bits <= 32,
        Ok(IpAddr::V6(_)) => bits <= 128,
        Err(_) => false,
    }
}

// Go's net.ParseMAC: 6, 8 or 20 octets as `aa:bb..`, `aa-bb..` or `aabb.ccdd..`.
fn is_mac(s: &str) -> bool {
    let octets_ok = |n: usize| n == 6 || n == 8 || n == 20;
    for sep in [':', '-'] {
        if s.contains(sep) {
            let parts: Vec<&str> = s.split(sep).collect();
            return octets_ok(parts.len())
                && parts
                    .iter()
                    .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()));
        }
    }
    let parts: Vec<&str> = s.split('.').collect();
    octets_ok(parts.len() * 2)
        && parts
            .iter()
            .all(|p| p.len() == 4 && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

// Go's url.ParseRequestURI: an absolute URI (`scheme:...`) or an absolute path.
fn is_request_uri(s: &str) -> bool {
    if s.is_empty() || s.chars().any(|c| c.is_control() || c == ' ') {
        return false;
    }
    if s.starts_with('/') {
        return true;
    }
    match s.split_once(':') {
        Some((scheme, _)) => {
            let mut chars = scheme.chars();
            chars.next().is_some_and(|c| c.is_ascii_alphabetic())
                && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        }
        None => false,
    }
}

fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && !local.chars().any(|c| c.is_whitespace() || c == '@')
        && (is_hostname(domain)
            || domain
                .strip_prefix('[')
                .and_then(|d| d.strip_suffix(']'))
                .is_some_and(|ip| ip.parse::<IpAddr>().is_ok()))
}

fn is_hex_color(s: &str) -> bool {
    s.strip_prefix('#')
        .is_some_and(|h| (h.len() == 3 || h.len() == 6) && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn is_rgb_color(s: &str) -> bool {
    let Some(inner) = s.strip_prefix("rgb(").and_then(|r| r.strip_suffix(')')) else {
        return false;
    };
    let parts: Vec<&str> = inner.split(',').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| p.trim().parse::<u16>().is_ok_and(|n| n <= 255))
}

fn is_ssn(s: &str) -> bool {
    let digits: String = s.chars().filter(|c| *c != '-' && *c != ' ').collect();
    digits.len() == 9 && digits.bytes().all(|b| b.is_ascii_digit()) && s.len() <= 11
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(f: &str, s: &str) -> bool {
        Format::parse(f).is_some_and(|f| f.check_str(s))
    }

    #[test]
    fn string_formats() {
        let cases: &[(&str, &str, bool)] = &[
            ("date-time", "2024-01-02T03:04:05Z", true),
            ("date-time", "2024-01-02T03:04:05.123+02:00", true),
            ("date-time", "2024-01-02", false),
            ("date", "2024-02-29", true),
            ("date", "2023-02-29", false),
            ("duration", "1h30m", true),
            ("duration", "250ms", true),
            ("duration", "3 days", true),
            ("duration", "1x", false),
            ("duration", "", false),
            ("uuid", "123e4567-e89b-12d3-a456-426614174000", true),
            ("uuid", "123e4567e89b12d3a456426614174000", false),
            ("uuid4", "123e4567-e89b-42d3-a456-426614174000", true),
            ("uuid4", "123e4567-e89b-12d3-a456-426614174000", false),
            ("hostname", "example.com", true),
            ("hostname", "-bad.com", false),
            ("hostname", "a_b", false),
            ("ipv4", "10.0.0.1", true),
            ("ipv4", "10.0.0.256", false),
            ("ipv6", "::1", true),
            ("ipv6", "10.0.0.1", false),
            ("cidr", "10.0.0.0/8", true),
            ("cidr", "10.0.0.0/33", false),
            ("cidr", "fd00::/64", true),
            ("mac", "00:1a:2b:3c:4d:5e", true),
            ("mac", "00-1a-2b-3c-4d-5e", true),
            ("mac", "001a.2b3c.4d5e", true),
            ("mac", "00:1a:2b", false),
            ("uri", "https://example.com/x?y=1", true),
            ("uri", "/just/a/path", true),
            ("uri", "relative/path", false),
            ("email", "a@example.com", true),
            ("email", "no-at-sign", false),
            ("byte", "aGVsbG8=", true),
            ("byte", "not base64!", false),
            ("bsonobjectid", "507f1f77bcf86cd799439011", true),
            ("hexcolor", "#fff", true),
            ("hexcolor", "fff", false),
            ("rgbcolor", "rgb(1, 2, 255)", true),
            ("rgbcolor", "rgb(1,2,256)", false),
            ("ssn", "123-45-6789", true),
        ];
        for (f, s, want) in cases {
            assert_eq!(ok(f, s), *want, "format {f} value {s:?}");
        }
        assert!(Format::parse("my-own-format").is_none());
    }

    #[test]
    fn number_formats() {
        let n = |v: serde_json::Value| v.as_number().cloned().unwrap_or_else(|| 0.into());
        assert!(Format::Int32.check_number(&n(serde_json::json!(2147483647))));
        assert!(!Format::Int32.check_number(&n(serde_json::json!(2147483648_i64))));
        assert!(Format::Int64.check_number(&n(serde_json::json!(-9007199254740993_i64))));
        assert!(!Format::Float.check_number(&n(serde_json::json!(1e300))));
        assert!(Format::Double.check_number(&n(serde_json::json!(1e300))));
    }

    #[test]
    fn durations_in_seconds() {
        assert_eq!(parse_duration_secs("1h30m"), Some(5400.0));
        assert_eq!(parse_duration_secs("-1.5s"), Some(-1.5));
        assert_eq!(parse_duration_secs("2 weeks"), Some(1_209_600.0));
    }
}
