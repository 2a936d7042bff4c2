//! The JOSE header: the fields this crate reads, borrowed where it can.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Deserializer};

/// The JOSE header fields this crate reads. Everything else (`jku`, `x5u`,
/// `jwk`, `x5c`, ...) is ignored: keys come only from configuration.
#[derive(Deserialize)]
pub(super) struct JoseHeader<'a> {
    #[serde(borrow)]
    pub(super) alg: Text<'a>,
    #[serde(borrow, default)]
    pub(super) typ: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub(super) kid: Option<Text<'a>>,
    #[serde(default)]
    pub(super) crit: Present,
}

/// A string borrowed from the header when it has no escapes (serde's own
/// `Cow` would copy it when wrapped in an `Option`).
pub(super) struct Text<'a>(Cow<'a, str>);

impl std::ops::Deref for Text<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor<'a>(std::marker::PhantomData<&'a ()>);

        impl<'de: 'a, 'a> serde::de::Visitor<'de> for TextVisitor<'a> {
            type Value = Text<'a>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
        }

        deserializer.deserialize_str(TextVisitor(std::marker::PhantomData))
    }
}

/// Whether a member is present at all, whatever its value (even `null`).
#[derive(Default)]
pub(super) struct Present(pub(super) bool);

impl<'de> Deserialize<'de> for Present {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(deserializer).map(|_| Present(true))
    }
}

/// `typ` values compare case-insensitively, with an optional `application/` prefix
/// (RFC 7515 §4.1.9).
pub(super) fn same_type(actual: &str, expected: &str) -> bool {
    fn strip(s: &str) -> &str {
        match s.get(..12) {
            Some(prefix) if prefix.eq_ignore_ascii_case("application/") => &s[12..],
            _ => s,
        }
    }
    strip(actual).eq_ignore_ascii_case(strip(expected))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typ_comparison() {
        assert!(same_type("JWT", "jwt"));
        assert!(same_type("application/at+jwt", "at+JWT"));
        assert!(!same_type("JWS", "JWT"));
        assert!(!same_type("applicatio", "JWT"));
    }
}
