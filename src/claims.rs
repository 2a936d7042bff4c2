//! Claim types: what the layer needs from a token's payload.
//!
//! The layer deserializes the payload once, into your own type, and reads the
//! registered claims through the [`Claims`] trait. [`StandardClaims`] is a
//! ready type that keeps every claim it does not know in a map.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

/// The registered claims of RFC 7519 plus the session claims this crate relies
/// on (`sid` from OpenID Connect session management, `auth_time` from OIDC core).
///
/// All times are `NumericDate`s: whole seconds since the Unix epoch. A payload
/// whose `exp`, `nbf`, `iat` or `auth_time` is not an integer does not
/// deserialize, so such a token is rejected.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisteredClaims {
    /// Issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Subject (usually the user id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Audience: one string or an array of strings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<Audience>,
    /// Expiry. Required: a token without an integer `exp` is rejected.
    pub exp: i64,
    /// Not before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Issued at; a renewal sets it to the renewal time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// Token id, new for every signed token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// Session id, chosen at login and stable across renewals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// When the user authenticated; the session cap counts from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
}

/// The `aud` claim: a single audience or several.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    /// `"aud": "api"`
    One(String),
    /// `"aud": ["api", "admin"]`
    Many(Vec<String>),
}

impl Audience {
    /// Whether `audience` is one of the values.
    pub fn contains(&self, audience: &str) -> bool {
        match self {
            Self::One(one) => one == audience,
            Self::Many(many) => many.iter().any(|a| a == audience),
        }
    }

    /// The values, in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        let (one, many) = match self {
            Self::One(one) => (Some(one.as_str()), &[][..]),
            Self::Many(many) => (None, many.as_slice()),
        };
        one.into_iter().chain(many.iter().map(String::as_str))
    }
}

impl Serialize for Audience {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::One(one) => serializer.serialize_str(one),
            Self::Many(many) => {
                let mut seq = serializer.serialize_seq(Some(many.len()))?;
                for item in many {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Audience {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AudienceVisitor;

        impl<'de> Visitor<'de> for AudienceVisitor {
            type Value = Audience;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array of strings")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Audience, E> {
                Ok(Audience::One(v.to_owned()))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Audience, E> {
                Ok(Audience::One(v))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Audience, A::Error> {
                // The size hint comes from the input: cap it so it cannot drive allocation.
                let mut many = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(16));
                while let Some(item) = seq.next_element::<String>()? {
                    many.push(item);
                }
                Ok(Audience::Many(many))
            }
        }

        deserializer.deserialize_any(AudienceVisitor)
    }
}

/// A claims type the layer can verify and renew.
///
/// Implement it for your own struct by embedding [`RegisteredClaims`] with
/// `#[serde(flatten)]`:
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use tower_sliding_jwt::{Claims, RegisteredClaims};
///
/// #[derive(Clone, Serialize, Deserialize)]
/// struct MyClaims {
///     #[serde(flatten)]
///     registered: RegisteredClaims,
///     role: String,
/// }
///
/// impl Claims for MyClaims {
///     fn registered(&self) -> &RegisteredClaims { &self.registered }
///     fn registered_mut(&mut self) -> &mut RegisteredClaims { &mut self.registered }
/// }
/// ```
///
/// A renewed token carries what your type serializes: claims your type does
/// not declare are dropped. To carry unknown claims through renewals, add a
/// `#[serde(flatten)] extra: serde_json::Map<String, serde_json::Value>` field or
/// use [`StandardClaims`].
pub trait Claims: Serialize + for<'de> Deserialize<'de> + Clone + Send + Sync + 'static {
    /// The registered and session claims.
    fn registered(&self) -> &RegisteredClaims;

    /// Mutable access to the registered and session claims.
    fn registered_mut(&mut self) -> &mut RegisteredClaims;

    /// The claims of the replacement token: every claim is copied except
    /// `iat`, `nbf`, `exp` and `jti`, which are set to `issued_at`, removed,
    /// `expires_at` and `jti`.
    ///
    /// Override it to refresh claims on renewal; keep `sid` and `auth_time`
    /// unchanged, or the session cap and revocation lose track of the session.
    fn renewed(&self, issued_at: i64, expires_at: i64, jti: String) -> Self {
        let mut next = self.clone();
        let registered = next.registered_mut();
        registered.iat = Some(issued_at);
        registered.nbf = None;
        registered.exp = expires_at;
        registered.jti = Some(jti);
        next
    }
}

/// A ready claims type: the registered claims plus every other claim, kept
/// in a JSON map and carried through renewals unchanged.
///
/// It deserializes in one pass without buffering (unlike a `#[serde(flatten)]`
/// struct), and refuses a payload that repeats a member.
///
/// ```
/// use tower_sliding_jwt::StandardClaims;
///
/// let claims: StandardClaims = serde_json::from_str(
///     r#"{"sub":"alice","exp":1700003600,"role":"admin"}"#,
/// ).unwrap();
/// assert_eq!(claims.registered.sub.as_deref(), Some("alice"));
/// assert_eq!(claims.extra["role"], "admin");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StandardClaims {
    /// The registered and session claims.
    #[serde(flatten)]
    pub registered: RegisteredClaims,
    /// Every other claim.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl StandardClaims {
    /// Claims with the given subject and your own claims; the layer fills in
    /// the times and ids when it issues the token.
    pub fn new(
        subject: impl Into<String>,
        extra: serde_json::Map<String, serde_json::Value>,
    ) -> Self {
        Self {
            registered: RegisteredClaims {
                sub: Some(subject.into()),
                ..RegisteredClaims::default()
            },
            extra,
        }
    }
}

impl Claims for StandardClaims {
    fn registered(&self) -> &RegisteredClaims {
        &self.registered
    }

    fn registered_mut(&mut self) -> &mut RegisteredClaims {
        &mut self.registered
    }
}

/// A member name: a registered claim, or anything else (owned, for the map).
enum Member {
    Iss,
    Sub,
    Aud,
    Exp,
    Nbf,
    Iat,
    Jti,
    Sid,
    AuthTime,
    Other(String),
}

impl<'de> Deserialize<'de> for Member {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MemberVisitor;

        impl Visitor<'_> for MemberVisitor {
            type Value = Member;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a claim name")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Member, E> {
                Ok(match v {
                    "iss" => Member::Iss,
                    "sub" => Member::Sub,
                    "aud" => Member::Aud,
                    "exp" => Member::Exp,
                    "nbf" => Member::Nbf,
                    "iat" => Member::Iat,
                    "jti" => Member::Jti,
                    "sid" => Member::Sid,
                    "auth_time" => Member::AuthTime,
                    other => Member::Other(other.to_owned()),
                })
            }
        }

        deserializer.deserialize_str(MemberVisitor)
    }
}

impl<'de> Deserialize<'de> for StandardClaims {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ClaimsVisitor;

        fn once<T, E: de::Error>(
            slot: &mut Option<T>,
            seen: &mut bool,
            name: &'static str,
            value: Option<T>,
        ) -> Result<(), E> {
            if std::mem::replace(seen, true) {
                return Err(E::duplicate_field(name));
            }
            *slot = value;
            Ok(())
        }

        impl<'de> Visitor<'de> for ClaimsVisitor {
            type Value = StandardClaims;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object of claims")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StandardClaims, A::Error> {
                let mut r = RegisteredClaims::default();
                let mut exp = None;
                let mut seen = [false; 9];
                let mut extra = serde_json::Map::new();
                while let Some(member) = map.next_key::<Member>()? {
                    match member {
                        Member::Iss => once(
                            &mut r.iss,
                            &mut seen[0],
                            "iss",
                            map.next_value::<Option<String>>()?,
                        )?,
                        Member::Sub => once(
                            &mut r.sub,
                            &mut seen[1],
                            "sub",
                            map.next_value::<Option<String>>()?,
                        )?,
                        Member::Aud => once(
                            &mut r.aud,
                            &mut seen[2],
                            "aud",
                            map.next_value::<Option<Audience>>()?,
                        )?,
                        Member::Exp => once(
                            &mut exp,
                            &mut seen[3],
                            "exp",
                            Some(map.next_value::<i64>()?),
                        )?,
                        Member::Nbf => once(
                            &mut r.nbf,
                            &mut seen[4],
                            "nbf",
                            map.next_value::<Option<i64>>()?,
                        )?,
                        Member::Iat => once(
                            &mut r.iat,
                            &mut seen[5],
                            "iat",
                            map.next_value::<Option<i64>>()?,
                        )?,
                        Member::Jti => once(
                            &mut r.jti,
                            &mut seen[6],
                            "jti",
                            map.next_value::<Option<String>>()?,
                        )?,
                        Member::Sid => once(
                            &mut r.sid,
                            &mut seen[7],
                            "sid",
                            map.next_value::<Option<String>>()?,
                        )?,
                        Member::AuthTime => once(
                            &mut r.auth_time,
                            &mut seen[8],
                            "auth_time",
                            map.next_value::<Option<i64>>()?,
                        )?,
                        Member::Other(name) => {
                            let value = map.next_value()?;
                            if extra.contains_key(&name) {
                                return Err(de::Error::custom("duplicate claim"));
                            }
                            extra.insert(name, value);
                        }
                    }
                }
                r.exp = exp.ok_or_else(|| de::Error::missing_field("exp"))?;
                Ok(StandardClaims {
                    registered: r,
                    extra,
                })
            }
        }

        deserializer.deserialize_map(ClaimsVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<StandardClaims, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn exp_must_be_an_integer() {
        assert!(parse(r#"{"exp":1}"#).is_ok());
        assert!(parse(r#"{}"#).is_err());
        assert!(parse(r#"{"exp":"1"}"#).is_err());
        assert!(parse(r#"{"exp":1.5}"#).is_err());
        assert!(parse(r#"{"exp":1e30}"#).is_err());
        assert!(parse(r#"{"exp":99999999999999999999}"#).is_err());
        assert!(parse(r#"{"exp":null}"#).is_err());
        assert!(parse(r#"{"exp":1,"nbf":"0"}"#).is_err());
    }

    #[test]
    fn duplicate_claims_are_refused() {
        assert!(parse(r#"{"exp":1,"exp":99999999}"#).is_err());
        assert!(parse(r#"{"exp":1,"sid":"a","sid":"b"}"#).is_err());
        assert!(parse(r#"{"exp":1,"role":"a","role":"admin"}"#).is_err());
        assert!(parse(r#"{"exp":1,"iss":null,"iss":"x"}"#).is_err());
        assert!(parse(r#"[1]"#).is_err(), "an array is not a claims object");
    }

    #[test]
    fn standard_claims_match_the_flattened_form() {
        #[derive(Deserialize)]
        struct Flattened {
            #[serde(flatten)]
            registered: RegisteredClaims,
            #[serde(flatten)]
            extra: serde_json::Map<String, serde_json::Value>,
        }
        let json = r#"{"iss":"i","sub":"s","aud":["a","b"],"exp":5,"nbf":1,"iat":2,"jti":"j","sid":"d","auth_time":3,"x":{"y":[1]},"e\u0078tra":true}"#;
        let ours = parse(json).unwrap();
        let theirs: Flattened = serde_json::from_str(json).unwrap();
        assert_eq!(ours.registered, theirs.registered);
        assert_eq!(ours.extra, theirs.extra);
        let round_trip = parse(&serde_json::to_string(&ours).unwrap()).unwrap();
        assert_eq!(round_trip, ours);
    }

    #[test]
    fn audience_forms() {
        let one = parse(r#"{"exp":1,"aud":"api"}"#).unwrap();
        assert!(one.registered.aud.as_ref().unwrap().contains("api"));
        let many = parse(r#"{"exp":1,"aud":["x","api"]}"#).unwrap();
        assert!(many.registered.aud.as_ref().unwrap().contains("api"));
        assert_eq!(
            many.registered
                .aud
                .as_ref()
                .unwrap()
                .iter()
                .collect::<Vec<_>>(),
            ["x", "api"]
        );
        assert!(parse(r#"{"exp":1,"aud":5}"#).is_err());
        assert!(parse(r#"{"exp":1,"aud":[5]}"#).is_err());
    }

    #[test]
    fn renewal_copies_all_but_times_and_jti() {
        let old = parse(
            r#"{"exp":100,"iat":10,"nbf":10,"jti":"a","sid":"s","auth_time":5,"sub":"u","role":"r"}"#,
        )
        .unwrap();
        let new = old.renewed(50, 200, "b".into());
        let r = &new.registered;
        assert_eq!(
            (r.iat, r.nbf, r.exp, r.jti.as_deref()),
            (Some(50), None, 200, Some("b"))
        );
        assert_eq!(
            (r.sid.as_deref(), r.auth_time, r.sub.as_deref()),
            (Some("s"), Some(5), Some("u"))
        );
        assert_eq!(new.extra["role"], "r");
        assert!(!new.extra.contains_key("exp"));
    }
}
