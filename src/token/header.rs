//! The JOSE header: the fields this crate reads, borrowed where it can.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Deserializer};

use crate::keys::{Key, alg_name};

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

impl JoseHeader<'_> {
    /// The fields a verification reads.
    pub(super) fn fields(&self) -> Fields<'_> {
        Fields {
            alg: &self.alg,
            typ: self.typ.as_deref(),
            kid: self.kid.as_deref(),
            crit: self.crit.0,
        }
    }
}

/// What a verification reads from a JOSE header.
pub(super) struct Fields<'a> {
    pub(super) alg: &'a str,
    pub(super) typ: Option<&'a str>,
    pub(super) kid: Option<&'a str>,
    /// Whether a `crit` member is present.
    pub(super) crit: bool,
}

/// How many keys [`Fields::known`] compares a header with: a ring's current
/// and recent keys, not a whole JWKS (whose headers are parsed instead).
const KNOWN_HEADERS: usize = 4;

impl<'k> Fields<'k> {
    /// The fields of `segment` when it is exactly the base64url header one of
    /// the first keys of `keys` signs with (`{"alg":..,"typ":"JWT","kid":..}`,
    /// see [`Key::header_b64`]): the same bytes decode to the same fields, so
    /// the header need not be decoded and parsed.
    pub(super) fn known(keys: &'k [Key], segment: &str) -> Option<Self> {
        let key = keys
            .iter()
            .take(KNOWN_HEADERS)
            .find(|key| key.header_b64() == segment)?;
        Some(Fields {
            alg: alg_name(key.algorithm()),
            typ: Some("JWT"),
            kid: key.kid(),
            crit: false,
        })
    }
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
    fn a_known_header_has_the_fields_parsing_it_gives() {
        use base64::Engine as _;
        let keys = [
            Key::hs256([7u8; 32]).unwrap(),
            Key::hs256([8u8; 32]).unwrap().with_kid("2026-11").unwrap(),
            Key::hs256([9u8; 32])
                .unwrap()
                .with_kid("rotated.2026_12-b")
                .unwrap(),
        ];
        for key in &keys {
            let segment = key.header_b64();
            let known = Fields::known(&keys, segment).expect("the key's own header is known");
            let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(segment)
                .unwrap();
            let parsed: JoseHeader<'_> = serde_json::from_slice(&json).unwrap();
            let parsed = parsed.fields();
            assert_eq!(
                (known.alg, known.typ, known.kid, known.crit),
                (parsed.alg, parsed.typ, parsed.kid, parsed.crit)
            );
            assert_eq!(known.kid, key.kid());
        }
        // Anything else is parsed.
        assert!(Fields::known(&keys, "eyJhbGciOiJIUzI1NiJ9").is_none());
        assert!(Fields::known(&keys[..1], keys[1].header_b64()).is_none());
    }

    #[test]
    fn typ_comparison() {
        assert!(same_type("JWT", "jwt"));
        assert!(same_type("application/at+jwt", "at+JWT"));
        assert!(!same_type("JWS", "JWT"));
        assert!(!same_type("applicatio", "JWT"));
    }
}
