//! Claim types: what the layer needs from a token's payload.
//!
//! The layer deserializes the payload once, into your own type, and reads the
//! registered claims through the [`Claims`] trait. [`StandardClaims`] is a
//! ready type that keeps every claim it does not know in a map.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

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
    /// This session's own cap (a `NumericDate`), set at login by
    /// [`Issuer::issue_with`](crate::Issuer::issue_with) ("remember me") and
    /// copied by every renewal; bounded by the layer's limits. Without it
    /// the cap is `auth_time` plus the layer's `max_session`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_exp: Option<i64>,
    /// This session's own token lifetime in seconds, set at login by
    /// [`Issuer::issue_with`](crate::Issuer::issue_with) and copied by every
    /// renewal; bounded by the layer's limits. Without it the layer's `ttl`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_ttl: Option<i64>,
    /// The `jti` of the token this one replaced, written by a renewal when
    /// reuse detection is on
    /// ([`with_reuse_detection`](crate::SlidingJwtBuilder::with_reuse_detection)):
    /// the first request carrying this token marks that one as replaced.
    /// Owned by the layer: a login never carries it, and each renewal sets it anew.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_jti: Option<String>,
    /// The `exp` of the token this one replaced (see
    /// [`prev_jti`](Self::prev_jti)): the mark lives until then, plus the leeway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_exp: Option<i64>,
    /// The key this token is bound to (RFC 9449 DPoP, RFC 7800 `cnf`): set
    /// at login from the client's proof and copied by every renewal. A
    /// token carrying it is accepted only by a layer configured
    /// [`with_dpop`](crate::SlidingJwtBuilder::with_dpop), under the `DPoP`
    /// scheme, with a proof signed by that key; anywhere else it is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
}

/// The `cnf` claim of a DPoP-bound token: the RFC 7638 thumbprint of the
/// client's public key (`jkt`, SHA-256, base64url). Any other confirmation
/// method (an mTLS certificate's `x5t#S256`, ...) is refused: the layer
/// could not check it, and a bound token never passes unchecked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Confirmation {
    /// The JWK SHA-256 thumbprint of the key the token is bound to.
    pub jkt: String,
}

impl Confirmation {
    /// A binding to the key with this RFC 7638 thumbprint.
    pub fn jkt(thumbprint: impl Into<String>) -> Self {
        Self {
            jkt: thumbprint.into(),
        }
    }
}

impl RegisteredClaims {
    /// The claims of a login for `subject`: only `sub` is set. The
    /// [`Issuer`](crate::Issuer) fills in `exp`, `iat`, `jti`, `sid`,
    /// `auth_time`, `iss` and `aud`, so no placeholder values are needed:
    ///
    /// ```
    /// use serde::{Deserialize, Serialize};
    /// use tower_sliding_jwt::{Claims, Key, RegisteredClaims, SlidingJwtLayer};
    ///
    /// #[derive(Clone, Serialize, Deserialize)]
    /// struct MyClaims {
    ///     #[serde(flatten)]
    ///     registered: RegisteredClaims,
    ///     role: String,
    /// }
    /// impl Claims for MyClaims {
    ///     fn registered(&self) -> &RegisteredClaims { &self.registered }
    ///     fn registered_mut(&mut self) -> &mut RegisteredClaims { &mut self.registered }
    /// }
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let layer = SlidingJwtLayer::<_, MyClaims>::builder(Key::hs256([7u8; 32])?).build()?;
    /// let login = MyClaims { registered: RegisteredClaims::new("alice"), role: "admin".into() };
    /// let issued = layer.issuer().issue(login)?;
    /// assert_eq!(issued.claims().registered.exp, issued.expires_at());
    /// assert!(issued.claims().registered.sid.is_some());
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(subject: impl Into<String>) -> Self {
        Self {
            sub: Some(subject.into()),
            ..Self::default()
        }
    }
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
/// At login, build it with [`RegisteredClaims::new`]`("alice")`: the issuer
/// sets the times and ids.
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
    /// It takes the claims by value (the layer hands it its own copy), so a
    /// renewal copies the claims once. Override it to refresh claims on
    /// renewal; keep `sid` and `auth_time` unchanged, or the session cap and
    /// revocation lose track of the session.
    fn renewed(mut self, issued_at: i64, expires_at: i64, jti: String) -> Self {
        let registered = self.registered_mut();
        registered.iat = Some(issued_at);
        registered.nbf = None;
        registered.exp = expires_at;
        registered.jti = Some(jti);
        self
    }
}

/// A ready claims type: the registered claims, plus your own claims `E`.
///
/// * `StandardClaims` (the default `E`, a JSON map) keeps every other claim
///   and carries it through renewals unchanged.
/// * `StandardClaims<MyClaims>`, with your own `#[derive(Deserialize)]`
///   struct, gives typed claims.
///
/// Either way the payload is read in **one pass** straight into the registered
/// claims and `E`, without the buffering a `#[serde(flatten)]` struct costs
/// (serde reads a flattened payload into an intermediate tree first). A
/// payload that repeats a member is refused. `E` must deserialize from a map
/// (a struct or a map type); it never sees the registered claims.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use tower_sliding_jwt::StandardClaims;
///
/// // Untyped: every other claim in a map.
/// let claims: StandardClaims = serde_json::from_str(
///     r#"{"sub":"alice","exp":1700003600,"role":"admin"}"#,
/// ).unwrap();
/// assert_eq!(claims.registered.sub.as_deref(), Some("alice"));
/// assert_eq!(claims.extra["role"], "admin");
///
/// // Typed: your own struct, still one pass.
/// #[derive(Debug, Clone, Serialize, Deserialize)]
/// struct Access {
///     role: String,
///     #[serde(default)]
///     tenants: Vec<u32>,
/// }
/// let claims: StandardClaims<Access> = serde_json::from_str(
///     r#"{"sub":"alice","exp":1700003600,"role":"admin","tenants":[7]}"#,
/// ).unwrap();
/// assert_eq!(claims.extra.role, "admin");
///
/// // At login, no placeholder times: the issuer sets them.
/// let login = StandardClaims::new("bob", Access { role: "user".into(), tenants: vec![] });
/// # let _ = login;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StandardClaims<E = serde_json::Map<String, serde_json::Value>> {
    /// The registered and session claims.
    #[serde(flatten)]
    pub registered: RegisteredClaims,
    /// Every other claim: a JSON map, or your own type.
    #[serde(flatten)]
    pub extra: E,
}

impl<E> StandardClaims<E> {
    /// Claims with the given subject and your own claims; the layer fills in
    /// the times and ids when it issues the token.
    pub fn new(subject: impl Into<String>, extra: E) -> Self {
        Self {
            registered: RegisteredClaims::new(subject),
            extra,
        }
    }
}

impl<E> Claims for StandardClaims<E>
where
    E: Serialize + for<'de> Deserialize<'de> + Clone + Send + Sync + 'static,
{
    fn registered(&self) -> &RegisteredClaims {
        &self.registered
    }

    fn registered_mut(&mut self) -> &mut RegisteredClaims {
        &mut self.registered
    }
}

/// A member name, borrowed from the payload when it has no escapes.
struct Name<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Name<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NameVisitor;

        impl<'de> Visitor<'de> for NameVisitor {
            type Value = Name<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a claim name")
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Borrowed(v)))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Owned(v.to_owned())))
            }
        }

        deserializer.deserialize_str(NameVisitor)
    }
}

const REGISTERED: [&str; 14] = [
    "iss",
    "sub",
    "aud",
    "exp",
    "nbf",
    "iat",
    "jti",
    "sid",
    "auth_time",
    "session_exp",
    "session_ttl",
    "prev_jti",
    "prev_exp",
    "cnf",
];

/// Names of the non-registered members seen so far: the first few inline
/// (no allocation for a usual payload), the rest in a set.
#[derive(Default)]
struct Seen<'de> {
    inline: [Option<Cow<'de, str>>; 8],
    more: std::collections::HashSet<Cow<'de, str>>,
}

impl<'de> Seen<'de> {
    /// Records `name`; `false` when it was seen before.
    fn insert(&mut self, name: Cow<'de, str>) -> bool {
        for slot in &mut self.inline {
            match slot {
                Some(seen) if *seen == name => return false,
                Some(_) => {}
                None => {
                    *slot = Some(name);
                    return true;
                }
            }
        }
        self.more.insert(name)
    }
}

/// The payload as `E` sees it: a map without the registered claims, which
/// are read into their slots on the way. One pass over the input.
struct Registered<'de, A> {
    map: A,
    claims: RegisteredClaims,
    exp: Option<i64>,
    seen: [bool; REGISTERED.len()],
    others: Seen<'de>,
}

impl<'de, A: MapAccess<'de>> Registered<'de, A> {
    /// Reads the value of registered claim `index` into its slot, once.
    fn read(&mut self, index: usize) -> Result<(), A::Error> {
        if std::mem::replace(&mut self.seen[index], true) {
            return Err(de::Error::duplicate_field(REGISTERED[index]));
        }
        let (map, r) = (&mut self.map, &mut self.claims);
        match index {
            0 => r.iss = map.next_value()?,
            1 => r.sub = map.next_value()?,
            2 => r.aud = map.next_value()?,
            3 => self.exp = Some(map.next_value()?),
            4 => r.nbf = map.next_value()?,
            5 => r.iat = map.next_value()?,
            6 => r.jti = map.next_value()?,
            7 => r.sid = map.next_value()?,
            8 => r.auth_time = map.next_value()?,
            9 => r.session_exp = map.next_value()?,
            10 => r.session_ttl = map.next_value()?,
            11 => r.prev_jti = map.next_value()?,
            12 => r.prev_exp = map.next_value()?,
            _ => r.cnf = map.next_value()?,
        }
        Ok(())
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Registered<'de, A> {
    type Error = A::Error;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        while let Some(Name(name)) = self.map.next_key::<Name<'de>>()? {
            if let Some(index) = REGISTERED.iter().position(|r| *r == name) {
                self.read(index)?;
                continue;
            }
            if !self.others.insert(name.clone()) {
                return Err(de::Error::custom("duplicate claim"));
            }
            return match name {
                Cow::Borrowed(name) => seed
                    .deserialize(de::value::BorrowedStrDeserializer::new(name))
                    .map(Some),
                Cow::Owned(name) => seed
                    .deserialize(de::IntoDeserializer::<A::Error>::into_deserializer(name))
                    .map(Some),
            };
        }
        Ok(None)
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, A::Error> {
        self.map.next_value_seed(seed)
    }
}

impl<'de, E: Deserialize<'de>> Deserialize<'de> for StandardClaims<E> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ClaimsVisitor<E>(PhantomData<fn() -> E>);

        impl<'de, E: Deserialize<'de>> Visitor<'de> for ClaimsVisitor<E> {
            type Value = StandardClaims<E>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object of claims")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<StandardClaims<E>, A::Error> {
                let mut members = Registered {
                    map,
                    claims: RegisteredClaims::default(),
                    exp: None,
                    seen: [false; REGISTERED.len()],
                    others: Seen::default(),
                };
                let extra = E::deserialize(de::value::MapAccessDeserializer::new(&mut members))?;
                // `E` may stop early: read the rest, so that every registered
                // claim is seen and every member checked.
                while members.next_key::<de::IgnoredAny>()?.is_some() {
                    members.next_value::<de::IgnoredAny>()?;
                }
                let mut registered = members.claims;
                registered.exp = members.exp.ok_or_else(|| de::Error::missing_field("exp"))?;
                Ok(StandardClaims { registered, extra })
            }
        }

        deserializer.deserialize_map(ClaimsVisitor(PhantomData))
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
    fn typed_claims_in_one_pass() {
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        struct Access {
            role: String,
            #[serde(default)]
            tenants: Vec<u32>,
        }
        type Typed = StandardClaims<Access>;
        let parse = |json: &str| serde_json::from_str::<Typed>(json);
        let claims = parse(
            r#"{"sub":"a","r\u006fle":"admin","exp":5,"other":{"x":1},"tenants":[1,2],"sid":"s"}"#,
        )
        .unwrap();
        assert_eq!(
            claims.extra,
            Access {
                role: "admin".into(),
                tenants: vec![1, 2]
            }
        );
        assert_eq!(
            (claims.registered.exp, claims.registered.sid.as_deref()),
            (5, Some("s")),
            "registered claims after the typed ones are still read"
        );
        let round_trip = parse(&serde_json::to_string(&claims).unwrap()).unwrap();
        assert_eq!(round_trip, claims);
        assert!(
            parse(r#"{"exp":1,"role":"a","role":"b"}"#).is_err(),
            "duplicate"
        );
        assert!(
            parse(r#"{"exp":1,"exp":2,"role":"a"}"#).is_err(),
            "duplicate exp"
        );
        assert!(parse(r#"{"role":"a"}"#).is_err(), "exp is required");
        assert!(
            parse(r#"{"exp":1}"#).is_err(),
            "the typed part is required too"
        );
        assert!(parse(r#"{"exp":"1","role":"a"}"#).is_err());
        // Many members: the inline record of names spills into a set.
        let many: String = (0..40).map(|i| format!(r#""c{i}":{i},"#)).collect();
        let json = format!(r#"{{{many}"exp":1,"c7":0}}"#);
        assert!(
            super::tests::parse(&json).is_err(),
            "a late duplicate is found"
        );
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
        let new = old.clone().renewed(50, 200, "b".into());
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
