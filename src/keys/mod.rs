//! Signing and verification keys, and the key ring that picks one by `kid`.
//!
//! Keys are checked and paired when they are built: a bad PEM, a secret that
//! is too short, or a private key that does not match its public key is a
//! [`ConfigError`], never a failure on a request.

use std::cell::RefCell;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind, EncodingKey};

use crate::error::{ConfigError, ConfigErrorKind, IssueError, IssueErrorKind};
use crate::jwks::{Jwk, Jwks, PublicParams};
use crate::reject::RejectionKind;

/// The jsonwebtoken crypto backend chosen by this crate's features.
///
/// `aws_lc_rs` wins when both features are enabled, so enabling features stays
/// additive; with neither, building a key is a [`ConfigErrorKind::NoCryptoBackend`].
pub(crate) fn provider() -> Result<&'static CryptoProvider, ConfigError> {
    #[cfg(feature = "aws_lc_rs")]
    {
        Ok(&jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER)
    }
    #[cfg(all(feature = "rust_crypto", not(feature = "aws_lc_rs")))]
    {
        Ok(&jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER)
    }
    #[cfg(not(any(feature = "rust_crypto", feature = "aws_lc_rs")))]
    {
        Err(ConfigError::new(ConfigErrorKind::NoCryptoBackend))
    }
}

/// One key: an algorithm, an optional `kid`, the public (or shared) part for
/// verification, and the private part when the key may sign.
#[derive(Clone)]
pub struct Key {
    /// Identifies the key material for the per-thread prepared keys; clones share it.
    id: u64,
    alg: Algorithm,
    kid: Option<String>,
    /// The base64url JOSE header this key signs with, built once by serde_json
    /// (so no configured string can break out of it).
    header: Arc<str>,
    encoding: Option<EncodingKey>,
    decoding: DecodingKey,
    /// The public half as JWK parameters; `None` for HMAC (a shared secret
    /// has no public half and is never published).
    public: Option<Arc<PublicParams>>,
    provider: &'static CryptoProvider,
}

impl Key {
    /// An HMAC key (`HS256`, `HS384` or `HS512`) from a raw secret.
    ///
    /// # Errors
    /// [`ConfigErrorKind::InvalidKey`] for a non-HMAC algorithm and
    /// [`ConfigErrorKind::WeakSecret`] for a secret shorter than the hash output
    /// (32, 48 or 64 bytes; RFC 7518 §3.2).
    pub fn hmac(alg: Algorithm, secret: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        let secret = secret.as_ref();
        if alg.family() != AlgorithmFamily::Hmac {
            return Err(ConfigErrorKind::InvalidKey.into());
        }
        check_secret(alg, secret)?;
        Self::new(
            alg,
            EncodingKey::from_secret(secret),
            DecodingKey::from_secret(secret),
        )
    }

    /// An `HS256` key from a raw secret of at least 32 bytes.
    ///
    /// # Errors
    /// [`ConfigErrorKind::WeakSecret`] for a shorter secret.
    pub fn hs256(secret: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        Self::hmac(Algorithm::HS256, secret)
    }

    /// A signing key from a PEM private key; the public key is derived from it.
    ///
    /// Reads what key tools print:
    ///
    /// | algorithm | PEM |
    /// |---|---|
    /// | `RS*`, `PS*` | PKCS#8 `PRIVATE KEY`, PKCS#1 `RSA PRIVATE KEY` (`openssl genrsa`) |
    /// | `ES256` (P-256), `ES384` (P-384) | PKCS#8 `PRIVATE KEY`, SEC1 `EC PRIVATE KEY` (`openssl ecparam -genkey`, whose `EC PARAMETERS` block is skipped) |
    /// | `EdDSA` (Ed25519) | PKCS#8 `PRIVATE KEY` (`openssl genpkey -algorithm ed25519`) |
    ///
    /// ```
    /// use tower_sliding_jwt::{Algorithm, Key};
    ///
    /// // What `openssl ecparam -name prime256v1 -genkey` prints.
    /// let sec1 = "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----
    /// -----BEGIN EC PRIVATE KEY-----
    /// MHcCAQEEIHtEmJ9w8U6aHuJu5UF2+R5HNox5FYW5Mo7qWKmCoPycoAoGCCqGSM49
    /// AwEHoUQDQgAEN6lk2L+gil3NJfgmW4KZMjDHbxNDDje0MjfXW64fvFKi2emrImxA
    /// QPXEOp4hm+l6XRbw9WJdAMHNipAAejuF5w==
    /// -----END EC PRIVATE KEY-----";
    /// let key = Key::from_pem(Algorithm::ES256, sec1)?;
    /// assert!(key.can_sign());
    ///
    /// // A key of the wrong kind says what it found and what to do.
    /// let error = Key::from_pem(Algorithm::ES384, sec1).unwrap_err();
    /// assert_eq!(
    ///     error.detail(),
    ///     Some("ES384 private key: found a SEC1 \"EC PRIVATE KEY\" on P-256; ES384 needs P-384"),
    /// );
    /// # Ok::<(), tower_sliding_jwt::ConfigError>(())
    /// ```
    ///
    /// # Errors
    /// [`ConfigErrorKind::InvalidKey`] when the PEM does not hold a private key
    /// of the algorithm's family (or curve); its
    /// [`detail`](ConfigError::detail) names the algorithm, the format found
    /// and, where one exists, the `openssl` command that converts it.
    /// [`ConfigErrorKind::NoCryptoBackend`] without a backend.
    pub fn from_pem(alg: Algorithm, private_pem: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        let pem = private_pem.as_ref();
        if alg.family() == AlgorithmFamily::Hmac {
            return Err(hmac_is_not_pem(alg));
        }
        let encoding = match crate::pem::private_pem(alg, pem)? {
            crate::pem::Private::Der(der) => EncodingKey::from_ec_der(&der),
            crate::pem::Private::Pem(block) => {
                let block = block.as_bytes();
                match alg.family() {
                    AlgorithmFamily::Rsa => EncodingKey::from_rsa_pem(block),
                    AlgorithmFamily::Ec => EncodingKey::from_ec_pem(block),
                    _ => EncodingKey::from_ed_pem(block),
                }
                .map_err(|e| {
                    ConfigError::with_source(ConfigErrorKind::InvalidKey, e).with_detail(format!(
                        "{} private key: the PEM block does not parse as {}",
                        alg_name(alg),
                        crate::pem::needs(alg)
                    ))
                })?
            }
        };
        Self::from_encoding_key(alg, encoding)
    }

    /// A signing key from a DER private key; the public key is derived from
    /// it. RSA keys are PKCS#1 or PKCS#8, ECDSA keys PKCS#8 or SEC1, EdDSA
    /// keys PKCS#8.
    ///
    /// # Errors
    /// As [`Key::from_pem`].
    pub fn from_der(alg: Algorithm, private_der: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        if alg.family() == AlgorithmFamily::Hmac {
            return Err(hmac_is_not_pem(alg));
        }
        let der = crate::pem::private_der(alg, private_der.as_ref())?;
        let encoding = match alg.family() {
            AlgorithmFamily::Rsa => EncodingKey::from_rsa_der(&der),
            AlgorithmFamily::Ec => EncodingKey::from_ec_der(&der),
            _ => EncodingKey::from_ed_der(&der),
        };
        Self::from_encoding_key(alg, encoding)
    }

    /// A verification-only key from a PEM public key (`-----BEGIN PUBLIC KEY-----`,
    /// or `RSA PUBLIC KEY` for RSA). Tokens signed by it verify; it never signs.
    ///
    /// # Errors
    /// [`ConfigErrorKind::InvalidKey`] when the PEM does not hold a public key of
    /// the algorithm's family; its [`detail`](ConfigError::detail) says what
    /// was found.
    pub fn public_pem(alg: Algorithm, public_pem: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        let pem = public_pem.as_ref();
        let decoding = match alg.family() {
            AlgorithmFamily::Rsa => DecodingKey::from_rsa_pem(pem),
            AlgorithmFamily::Ec => DecodingKey::from_ec_pem(pem),
            AlgorithmFamily::Ed => DecodingKey::from_ed_pem(pem),
            AlgorithmFamily::Hmac => return Err(hmac_is_not_pem(alg)),
        }
        .map_err(|e| {
            let problem = crate::pem::public_problem(alg, pem);
            let detail = problem.detail().unwrap_or_default().to_owned();
            ConfigError::with_source(ConfigErrorKind::InvalidKey, e).with_detail(detail)
        })?;
        Self::verifying(alg, decoding)
    }

    /// A signing key from jsonwebtoken's key types (for JWKs, base64 secrets or
    /// other forms). The pair is checked by signing and verifying a probe.
    ///
    /// # Errors
    /// [`ConfigErrorKind::InvalidKey`] when either key does not suit `alg`,
    /// [`ConfigErrorKind::WeakSecret`] for an HMAC secret shorter than the hash
    /// output, [`ConfigErrorKind::KeyMismatch`] when they do not belong together.
    pub fn new(
        alg: Algorithm,
        encoding: EncodingKey,
        decoding: DecodingKey,
    ) -> Result<Self, ConfigError> {
        let key = Self::verifying(alg, decoding)?;
        if encoding.family() != alg.family() {
            return Err(ConfigErrorKind::InvalidKey.into());
        }
        if alg.family() == AlgorithmFamily::Hmac {
            check_secret(alg, encoding.as_bytes())?;
        }
        let key = Key {
            encoding: Some(encoding),
            ..key
        };
        // Sign and verify a probe: proves the private key parses and matches.
        let probe = b"tower-sliding-jwt key probe";
        let signature = key
            .sign(probe)
            .map_err(|e| ConfigError::with_source(ConfigErrorKind::InvalidKey, e))?;
        if !key.verify(probe, &signature) {
            return Err(ConfigErrorKind::KeyMismatch.into());
        }
        Ok(key)
    }

    /// A verification-only key from jsonwebtoken's [`DecodingKey`].
    ///
    /// # Errors
    /// [`ConfigErrorKind::InvalidKey`] when the key does not suit `alg`,
    /// [`ConfigErrorKind::WeakSecret`] for an HMAC secret shorter than the hash
    /// output (32, 48 or 64 bytes).
    pub fn verifying(alg: Algorithm, decoding: DecodingKey) -> Result<Self, ConfigError> {
        let provider = provider()?;
        if decoding.family() != alg.family() {
            return Err(ConfigErrorKind::InvalidKey.into());
        }
        if alg.family() == AlgorithmFamily::Hmac {
            let secret = decoding
                .try_get_as_bytes()
                .map_err(|e| ConfigError::with_source(ConfigErrorKind::InvalidKey, e))?;
            check_secret(alg, secret)?;
        }
        (provider.verifier_factory)(&alg, &decoding)
            .map_err(|e| ConfigError::with_source(ConfigErrorKind::InvalidKey, e))?;
        let public = public_params(provider, alg, &decoding).map(Arc::new);
        Ok(Key {
            id: NEXT_KEY_ID.fetch_add(1, Ordering::Relaxed),
            alg,
            kid: None,
            header: jose_header(alg, None),
            encoding: None,
            decoding,
            public,
            provider,
        })
    }

    fn from_encoding_key(alg: Algorithm, encoding: EncodingKey) -> Result<Self, ConfigError> {
        let provider = provider()?;
        let utils = &provider.key_utils;
        let der = encoding.as_bytes();
        let invalid = |e| {
            ConfigError::with_source(ConfigErrorKind::InvalidKey, e).with_detail(format!(
                "{} private key: not {} (or the key data is damaged)",
                alg_name(alg),
                crate::pem::needs(alg)
            ))
        };
        let decoding = match alg.family() {
            AlgorithmFamily::Rsa => {
                let (n, e) = (utils.rsa_pub_components_from_private_key)(der).map_err(invalid)?;
                DecodingKey::from_rsa_raw_components(&n, &e)
            }
            AlgorithmFamily::Ec => {
                let (_, x, y) =
                    (utils.ec_pub_components_from_private_key)(der, alg).map_err(invalid)?;
                DecodingKey::from_ec_components(
                    &URL_SAFE_NO_PAD.encode(x),
                    &URL_SAFE_NO_PAD.encode(y),
                )
                .map_err(invalid)?
            }
            AlgorithmFamily::Ed => {
                let curve = jsonwebtoken::jwk::EllipticCurve::Ed25519;
                let x = (utils.ed_pub_components_from_private_key)(der, &curve).map_err(invalid)?;
                DecodingKey::from_ed_components(&URL_SAFE_NO_PAD.encode(x)).map_err(invalid)?
            }
            AlgorithmFamily::Hmac => return Err(ConfigErrorKind::InvalidKey.into()),
        };
        Self::new(alg, encoding, decoding)
    }

    /// Sets the key id written to the `kid` header of tokens this key signs and
    /// matched exactly against the `kid` of incoming tokens.
    ///
    /// # Errors
    /// [`ConfigErrorKind::InvalidKeyId`] for an empty id, one longer than 256
    /// bytes, or one with characters outside printable ASCII.
    pub fn with_kid(mut self, kid: impl Into<String>) -> Result<Self, ConfigError> {
        let kid = kid.into();
        let printable = kid
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\');
        if kid.is_empty() || kid.len() > 256 || !printable {
            return Err(ConfigErrorKind::InvalidKeyId.into());
        }
        self.header = jose_header(self.alg, Some(&kid));
        self.kid = Some(kid);
        Ok(self)
    }

    /// Sets the key id to the key's RFC 7638 JWK thumbprint (base64url of the
    /// SHA-256 of its canonical public JWK), so tokens it signs carry it and
    /// any JWKS client finds the key by it without a naming scheme.
    ///
    /// # Errors
    /// [`ConfigErrorKind::NoPublicKey`] for an HMAC key (a shared secret has
    /// no public half, and is never published).
    pub fn with_thumbprint_kid(self) -> Result<Self, ConfigError> {
        let thumbprint = self.thumbprint().ok_or(ConfigErrorKind::NoPublicKey)?;
        self.with_kid(thumbprint)
    }

    /// The key's RFC 7638 JWK thumbprint (SHA-256, base64url); `None` for an
    /// HMAC key.
    pub fn thumbprint(&self) -> Option<String> {
        let public = self.public.as_ref()?;
        let digest = (self.provider.key_utils.compute_digest)(
            public.thumbprint_input().as_bytes(),
            jsonwebtoken::jwk::ThumbprintHash::SHA256,
        )
        .ok()?;
        Some(URL_SAFE_NO_PAD.encode(digest))
    }

    /// The public half of this key as a JWK (RFC 7517) with `kid`, `alg` and
    /// `use: "sig"`; `None` for an HMAC key, so a shared secret can never be
    /// published.
    pub fn to_jwk(&self) -> Option<Jwk> {
        let params = self.public.clone()?;
        Some(Jwk::new(self.kid.clone(), self.alg, params))
    }

    /// This key without its private part: it verifies and never signs (for
    /// a [verify-only layer](crate::SlidingJwtLayer::verifier)). An HMAC
    /// key keeps its secret: for HMAC the same secret does both.
    pub fn verifying_half(&self) -> Key {
        Key {
            encoding: None,
            ..self.clone()
        }
    }

    /// The algorithm this key signs and verifies with.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The key id, if any.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// Identifies this key material (clones share it).
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// The base64url-encoded JOSE header of tokens this key signs.
    pub(crate) fn header_b64(&self) -> &str {
        &self.header
    }

    /// Whether this key has a private part and can sign.
    pub fn can_sign(&self) -> bool {
        self.encoding.is_some()
    }

    /// Verifies `signature` over `message` with this thread's prepared
    /// verifier. Never panics; `false` on any failure.
    pub(crate) fn verify(&self, message: &[u8], signature: &Vec<u8>) -> bool {
        let make = || (self.provider.verifier_factory)(&self.alg, &self.decoding).ok();
        let run =
            |verifier: &(dyn JwtVerifier + 'static)| verifier.verify(message, signature).is_ok();
        prepared(self.id, verifiers, make, run).unwrap_or(false)
    }

    /// Signs `message` with this thread's prepared signer.
    pub(crate) fn sign(&self, message: &[u8]) -> Result<Vec<u8>, IssueError> {
        let failed = |e: Option<Box<dyn std::error::Error + Send + Sync>>| {
            IssueError::new(IssueErrorKind::Signing, e)
        };
        let encoding = self.encoding.as_ref().ok_or_else(|| failed(None))?;
        let make = || (self.provider.signer_factory)(&self.alg, encoding).ok();
        let run = |signer: &(dyn JwtSigner + 'static)| {
            signer.try_sign(message).map_err(|e| failed(Some(e.into())))
        };
        prepared(self.id, signers, make, run).unwrap_or_else(|| Err(failed(None)))
    }
}

/// The base64url JOSE header `{"alg":..,"typ":"JWT","kid":..}`, written by
/// serde_json so that a `kid` is always a properly escaped JSON string.
fn jose_header(alg: Algorithm, kid: Option<&str>) -> Arc<str> {
    #[derive(serde::Serialize)]
    struct Header<'a> {
        alg: &'static str,
        typ: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        kid: Option<&'a str>,
    }
    let header = Header {
        alg: alg_name(alg),
        typ: "JWT",
        kid,
    };
    // Serializing a struct of strings cannot fail.
    let json = serde_json::to_vec(&header).unwrap_or_default();
    URL_SAFE_NO_PAD.encode(json).into()
}

/// Refuses a PEM or DER "private key" for an HMAC algorithm.
fn hmac_is_not_pem(alg: Algorithm) -> ConfigError {
    ConfigError::new(ConfigErrorKind::InvalidKey).with_detail(format!(
        "{} key: HMAC keys are raw secrets, not PEM or DER; use Key::hmac",
        alg_name(alg)
    ))
}

/// RFC 7518 §3.2: an HMAC secret is at least as long as the hash output
/// (32, 48 or 64 bytes), whichever constructor it came through.
fn check_secret(alg: Algorithm, secret: &[u8]) -> Result<(), ConfigError> {
    let min_len = match alg {
        Algorithm::HS256 => 32,
        Algorithm::HS384 => 48,
        Algorithm::HS512 => 64,
        _ => return Err(ConfigErrorKind::InvalidKey.into()),
    };
    if secret.len() < min_len {
        return Err(ConfigErrorKind::WeakSecret.into());
    }
    Ok(())
}

static NEXT_KEY_ID: AtomicU64 = AtomicU64::new(1);

/// How many prepared verifiers (and signers) each thread keeps.
const PREPARED_PER_THREAD: usize = 8;

/// Keys parsed and scheduled once per thread and reused: an HMAC key's inner
/// and outer pads, an ECDSA or RSA key's parsed form. (The backend's verifier
/// and signer types are not `Send`, so each thread keeps its own.) Bounded:
/// the least recently prepared entry goes first.
#[derive(Default)]
struct Prepared {
    verifiers: PreparedList<dyn JwtVerifier>,
    signers: PreparedList<dyn JwtSigner>,
}

/// Prepared items by key id.
type PreparedList<P> = Vec<(u64, Box<P>)>;

fn verifiers(prepared: &mut Prepared) -> &mut PreparedList<dyn JwtVerifier> {
    &mut prepared.verifiers
}

fn signers(prepared: &mut Prepared) -> &mut PreparedList<dyn JwtSigner> {
    &mut prepared.signers
}

thread_local! {
    static PREPARED: RefCell<Prepared> = RefCell::new(Prepared::default());
}

/// Runs `run` with the prepared item `id`, preparing it with `make` first if
/// needed. Falls back to an unprepared item if the thread-local is unavailable
/// (thread teardown); `None` when `make` fails.
fn prepared<P: ?Sized, T>(
    id: u64,
    list: fn(&mut Prepared) -> &mut PreparedList<P>,
    make: impl Fn() -> Option<Box<P>>,
    run: impl Fn(&P) -> T,
) -> Option<T> {
    let cached = PREPARED.try_with(|cell| {
        let mut prepared = cell.try_borrow_mut().ok()?;
        let items = list(&mut prepared);
        if let Some((_, item)) = items.iter().find(|(item_id, _)| *item_id == id) {
            return Some(run(item));
        }
        let item = make()?;
        let result = run(&item);
        if items.len() >= PREPARED_PER_THREAD {
            items.remove(0);
        }
        items.push((id, item));
        Some(result)
    });
    match cached {
        Ok(Some(result)) => Some(result),
        _ => make().map(|item| run(&item)),
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .field("can_sign", &self.can_sign())
            .finish_non_exhaustive()
    }
}

/// The JWK parameters of the public half of `decoding`, or `None` for HMAC
/// (and for a key whose public half cannot be read back, which then cannot
/// be published).
fn public_params(
    provider: &CryptoProvider,
    alg: Algorithm,
    decoding: &DecodingKey,
) -> Option<PublicParams> {
    let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
    match (alg.family(), decoding.kind()) {
        (AlgorithmFamily::Ec, DecodingKeyKind::SecretOrDer(point)) => {
            // An uncompressed SEC1 point: 0x04 || x || y.
            let (crv, size) = match alg {
                Algorithm::ES256 => ("P-256", 32),
                Algorithm::ES384 => ("P-384", 48),
                _ => return None,
            };
            let coordinates = point.strip_prefix(&[0x04])?;
            if coordinates.len() != 2 * size {
                return None;
            }
            let (x, y) = coordinates.split_at(size);
            Some(PublicParams::Ec {
                crv,
                x: b64(x),
                y: b64(y),
            })
        }
        (AlgorithmFamily::Ed, DecodingKeyKind::SecretOrDer(x)) if x.len() == 32 => {
            Some(PublicParams::Okp { x: b64(x) })
        }
        (AlgorithmFamily::Rsa, kind) => {
            let (n, e) = match kind {
                DecodingKeyKind::RsaModulusExponent { n, e } => (n.clone(), e.clone()),
                DecodingKeyKind::SecretOrDer(der) => {
                    (provider.key_utils.rsa_pub_components_from_public_key)(der).ok()?
                }
            };
            // RFC 7518 §6.3.1: unsigned big-endian, no leading zero octets.
            let trim = |v: &[u8]| {
                let start = v.iter().position(|&b| b != 0).unwrap_or(v.len());
                b64(&v[start..])
            };
            Some(PublicParams::Rsa {
                n: trim(&n),
                e: trim(&e),
            })
        }
        _ => None,
    }
}

/// The keys a [`Keys`] implementation verifies with at this moment: borrowed
/// from a key set that never changes, or a shared snapshot of one that does
/// (a remote JWKS (`RemoteJwks`, feature `jwks`)). Dereferences to `[Key]`.
pub struct KeySnapshot<'a>(Snapshot<'a>);

enum Snapshot<'a> {
    Borrowed(&'a [Key]),
    Shared(Arc<[Key]>),
}

impl<'a> From<&'a [Key]> for KeySnapshot<'a> {
    fn from(keys: &'a [Key]) -> Self {
        Self(Snapshot::Borrowed(keys))
    }
}

impl From<Arc<[Key]>> for KeySnapshot<'_> {
    fn from(keys: Arc<[Key]>) -> Self {
        Self(Snapshot::Shared(keys))
    }
}

impl Deref for KeySnapshot<'_> {
    type Target = [Key];

    fn deref(&self) -> &[Key] {
        match &self.0 {
            Snapshot::Borrowed(keys) => keys,
            Snapshot::Shared(keys) => keys,
        }
    }
}

impl fmt::Debug for KeySnapshot<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Where the layer finds its keys: at most one active key that signs, and the
/// keys that verify (the active one among them).
///
/// The layer itself picks the verification key: the one whose `kid` equals the
/// token's `kid` exactly (a token without `kid` matches the key without one), and
/// only if that key's algorithm equals the token's `alg`. Implementations only
/// say which keys exist, so every implementation gets the same rules.
///
/// Without a signing key ([`signing_key`](Self::signing_key) is `None`) a
/// layer only verifies: it is built with
/// [`SlidingJwtLayer::verifier`](crate::SlidingJwtLayer::verifier) and never
/// renews.
pub trait Keys: Send + Sync + 'static {
    /// The key that signs new and renewed tokens; `None` for a verify-only
    /// key set (public keys, a remote JWKS (`RemoteJwks`, feature `jwks`)).
    fn signing_key(&self) -> Option<&Key>;

    /// Every key that verifies incoming tokens, including the signing key.
    fn verification_keys(&self) -> KeySnapshot<'_>;

    /// Changes whenever the keys change (for implementations that rotate keys
    /// at run time); the verified-token cache is emptied when it does.
    ///
    /// The contract: if [`verification_keys`](Self::verification_keys) can
    /// return a different set than before, `version` must return a different
    /// value too. [`Key`] and [`KeyRing`] never change once built, so the
    /// default (a constant) is right for them. The cache does not rely on this
    /// alone: a cached token is only served while the very key that verified it
    /// is still among the verification keys.
    fn version(&self) -> u64 {
        0
    }

    /// Whether the keys are loaded. While `false`, a token that needs a key is
    /// answered 503 with `Retry-After` (gRPC `UNAVAILABLE`), never 401, so
    /// clients keep their tokens. Always `true` for keys given in code (the
    /// default); a remote JWKS (`RemoteJwks`, feature `jwks`) is ready after its first
    /// successful load.
    fn is_ready(&self) -> bool {
        true
    }

    /// Called on the request path when no verification key has the token's
    /// `kid`: a key set that can refresh itself may schedule a refresh. It
    /// must return at once (never fetch inline) and bound how often it acts,
    /// since anyone can send a token with a made-up `kid`. Does nothing by
    /// default.
    fn key_not_found(&self, kid: Option<&str>) {
        let _ = kid;
    }

    /// The public halves of the verification keys as a JWKS (RFC 7517), for
    /// [`JwksService`](crate::JwksService). HMAC keys never appear: a key
    /// set of only HMAC keys gives an empty set.
    fn jwks(&self) -> Jwks {
        Jwks::from_keys(&self.verification_keys())
    }
}

impl Keys for Key {
    fn signing_key(&self) -> Option<&Key> {
        self.can_sign().then_some(self)
    }

    fn verification_keys(&self) -> KeySnapshot<'_> {
        std::slice::from_ref(self).into()
    }
}

/// One active signing key and any number of retired keys that still verify.
///
/// A token signed by a retired key stays valid until it expires, and its first
/// renewal is signed by the active key, so rotating keys logs nobody out.
///
/// ```
/// use tower_sliding_jwt::{Key, KeyRing};
///
/// # fn main() -> Result<(), tower_sliding_jwt::ConfigError> {
/// let retired = Key::hs256([1u8; 32])?.with_kid("2025-10")?;
/// let active = Key::hs256([2u8; 32])?.with_kid("2026-11")?;
/// let ring = KeyRing::new(active)?.with_verification_key(retired)?;
/// # let _ = ring;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct KeyRing {
    /// `keys[0]` is the active key when `signs`.
    keys: Vec<Key>,
    signs: bool,
}

impl KeyRing {
    /// A ring whose active key is `active`.
    ///
    /// # Errors
    /// [`ConfigErrorKind::NotASigningKey`] when `active` has no private part.
    pub fn new(active: Key) -> Result<Self, ConfigError> {
        if !active.can_sign() {
            return Err(ConfigErrorKind::NotASigningKey.into());
        }
        Ok(Self {
            keys: vec![active],
            signs: true,
        })
    }

    /// A verify-only ring: every key verifies, none signs (private parts are
    /// dropped). For a [verify-only layer](crate::SlidingJwtLayer::verifier)
    /// that accepts another service's tokens.
    ///
    /// # Errors
    /// [`ConfigErrorKind::NoPublicKey`] when `keys` is empty,
    /// [`ConfigErrorKind::DuplicateKeyId`] when two keys share a `kid` (or
    /// both have none).
    pub fn verifying(keys: impl IntoIterator<Item = Key>) -> Result<Self, ConfigError> {
        let mut ring = Self {
            keys: Vec::new(),
            signs: false,
        };
        for key in keys {
            ring = ring.with_verification_key(key)?;
        }
        if ring.keys.is_empty() {
            return Err(ConfigErrorKind::NoPublicKey.into());
        }
        Ok(ring)
    }

    /// A verify-only ring from a JWKS document (RFC 7517), such as another
    /// service's `/.well-known/jwks.json`. `oct` (HMAC) keys are never
    /// accepted; keys this crate cannot use (an unknown `kty` or curve,
    /// `use` other than `sig`, an RSA modulus under 2048 bits, a duplicate
    /// `kid`) are skipped, with the reason in the log (feature `tracing`).
    ///
    /// # Errors
    /// [`ConfigErrorKind::InvalidJwks`] when the document is not a JWKS or
    /// holds no usable key.
    pub fn from_jwks(document: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        let keys = crate::jwks::parse(document.as_ref())
            .map_err(|e| ConfigError::with_source(ConfigErrorKind::InvalidJwks, e))?;
        Self::verifying(keys)
    }

    /// The keys of the ring (the active one first when the ring signs).
    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    /// Adds a key that verifies but does not sign.
    ///
    /// # Errors
    /// [`ConfigErrorKind::DuplicateKeyId`] when a key with the same `kid` (or
    /// another key without one) is already in the ring.
    pub fn with_verification_key(mut self, key: Key) -> Result<Self, ConfigError> {
        if self.keys.iter().any(|k| k.kid == key.kid) {
            return Err(ConfigErrorKind::DuplicateKeyId.into());
        }
        self.keys.push(key.verifying_half());
        Ok(self)
    }
}

impl Keys for KeyRing {
    fn signing_key(&self) -> Option<&Key> {
        self.keys.first().filter(|_| self.signs)
    }

    fn verification_keys(&self) -> KeySnapshot<'_> {
        self.keys.as_slice().into()
    }
}

/// The rejection for a token no key was selected for. While the keys are not
/// loaded, that is 503, not 401; a `kid` no key has may make the key set
/// refresh itself ([`Keys::key_not_found`]).
pub(crate) fn missed<K: Keys + ?Sized>(
    keys: &K,
    loaded: &[Key],
    miss: KeyMiss,
    kid: Option<&str>,
) -> RejectionKind {
    if !keys.is_ready() {
        return RejectionKind::KeysUnavailable;
    }
    if !loaded.iter().any(|k| k.kid.as_deref() == kid) {
        keys.key_not_found(kid);
    }
    match miss {
        KeyMiss::Algorithm => RejectionKind::AlgorithmNotAllowed,
        KeyMiss::UnknownKid => RejectionKind::UnknownKey,
    }
}

/// Finds the verification key for a token header: exact `kid`, same `alg`.
pub(crate) fn select<'k>(
    keys: &'k [Key],
    alg: &str,
    kid: Option<&str>,
) -> Result<&'k Key, KeyMiss> {
    let Some(key) = keys.iter().find(|k| k.kid.as_deref() == kid) else {
        return Err(if keys.iter().any(|k| alg_name(k.alg) == alg) {
            KeyMiss::UnknownKid
        } else {
            KeyMiss::Algorithm
        });
    };
    if alg_name(key.alg) != alg {
        return Err(KeyMiss::Algorithm);
    }
    Ok(key)
}

/// Why no key was selected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyMiss {
    /// The `alg` is not one the keys use (including `none`).
    Algorithm,
    /// The `alg` is known, the `kid` is not.
    UnknownKid,
}

/// The JOSE name of an algorithm.
pub(crate) fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::EdDSA => "EdDSA",
        // `Algorithm` is non-exhaustive: an algorithm this crate does not know
        // never matches a header.
        _ => "\0unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_hmac_secrets_are_refused() {
        assert_eq!(
            Key::hs256([0u8; 31]).unwrap_err().kind(),
            ConfigErrorKind::WeakSecret
        );
        assert!(Key::hs256([0u8; 32]).is_ok());
        assert_eq!(
            Key::hmac(Algorithm::HS512, [0u8; 63]).unwrap_err().kind(),
            ConfigErrorKind::WeakSecret
        );
        assert_eq!(
            Key::hmac(Algorithm::ES256, [0u8; 64]).unwrap_err().kind(),
            ConfigErrorKind::InvalidKey
        );
    }

    #[test]
    fn every_hmac_constructor_enforces_the_minimum_length() {
        let weak =
            |r: Result<Key, ConfigError>| r.unwrap_err().kind() == ConfigErrorKind::WeakSecret;
        for (alg, min) in [
            (Algorithm::HS256, 32),
            (Algorithm::HS384, 48),
            (Algorithm::HS512, 64),
        ] {
            for len in [0, 5, min - 1] {
                let secret = vec![7u8; len];
                assert!(weak(Key::hmac(alg, &secret)), "{alg:?} {len}");
                assert!(weak(Key::new(
                    alg,
                    EncodingKey::from_secret(&secret),
                    DecodingKey::from_secret(&secret),
                )));
                assert!(weak(Key::verifying(alg, DecodingKey::from_secret(&secret))));
            }
            let secret = vec![7u8; min];
            assert!(Key::hmac(alg, &secret).is_ok());
            assert!(Key::verifying(alg, DecodingKey::from_secret(&secret)).is_ok());
            // A short signing half next to a long verifying half is refused too.
            assert!(weak(Key::new(
                alg,
                EncodingKey::from_secret(b"short"),
                DecodingKey::from_secret(&secret),
            )));
        }
    }

    #[test]
    fn the_written_header_is_json_whatever_the_kid() {
        let key = Key::hs256([0u8; 32]).unwrap();
        let header = |key: &Key| -> serde_json::Value {
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(key.header_b64()).unwrap()).unwrap()
        };
        assert_eq!(
            header(&key),
            serde_json::json!({"alg": "HS256", "typ": "JWT"})
        );
        let key = key.with_kid("k-1 ~!#$%&'()*+,/:;<=>?@[]^`{|}").unwrap();
        let value = header(&key);
        assert_eq!(value["kid"], "k-1 ~!#$%&'()*+,/:;<=>?@[]^`{|}");
        assert_eq!(value.as_object().unwrap().len(), 3, "nothing breaks out");
        // Quotes, backslashes and control characters are refused outright.
        for bad in ["a\"b", "a\\b", "a\nb", "a\u{0}b", "é"] {
            assert!(
                Key::hs256([0u8; 32]).unwrap().with_kid(bad).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn garbage_pem_is_a_config_error() {
        for alg in [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA] {
            assert_eq!(
                Key::from_pem(alg, "not a pem").unwrap_err().kind(),
                ConfigErrorKind::InvalidKey
            );
            assert_eq!(
                Key::public_pem(alg, "not a pem").unwrap_err().kind(),
                ConfigErrorKind::InvalidKey
            );
            assert_eq!(
                Key::from_der(alg, [0u8; 40]).unwrap_err().kind(),
                ConfigErrorKind::InvalidKey
            );
        }
        assert_eq!(
            Key::from_pem(Algorithm::HS256, "x").unwrap_err().kind(),
            ConfigErrorKind::InvalidKey
        );
    }

    #[test]
    fn kid_rules() {
        let key = Key::hs256([0u8; 32]).unwrap();
        assert!(key.clone().with_kid("").is_err());
        assert!(key.clone().with_kid("a\"b").is_err());
        assert!(key.clone().with_kid("x".repeat(257)).is_err());
        assert_eq!(key.with_kid("k1").unwrap().kid(), Some("k1"));
    }

    #[test]
    fn ring_rejects_duplicate_kids_and_verify_only_active() {
        let a = Key::hs256([1u8; 32]).unwrap();
        let b = Key::hs256([2u8; 32]).unwrap();
        assert_eq!(
            KeyRing::new(a.clone())
                .unwrap()
                .with_verification_key(b)
                .unwrap_err()
                .kind(),
            ConfigErrorKind::DuplicateKeyId
        );
        let verify_only =
            Key::verifying(Algorithm::HS256, DecodingKey::from_secret(&[1u8; 32])).unwrap();
        assert_eq!(
            KeyRing::new(verify_only).unwrap_err().kind(),
            ConfigErrorKind::NotASigningKey
        );
    }

    #[test]
    fn debug_hides_key_material() {
        let key = Key::hs256(b"super-secret-super-secret-super-secret").unwrap();
        assert!(!format!("{key:?}").contains("super-secret"));
    }

    #[test]
    fn selection_is_exact() {
        let a = Key::hs256([1u8; 32]).unwrap().with_kid("a").unwrap();
        let b = Key::hs256([2u8; 32]).unwrap();
        let keys = [a, b];
        assert_eq!(select(&keys, "HS256", Some("a")).unwrap().kid(), Some("a"));
        assert_eq!(select(&keys, "HS256", None).unwrap().kid(), None);
        assert_eq!(
            select(&keys, "HS256", Some("A")).unwrap_err(),
            KeyMiss::UnknownKid
        );
        assert_eq!(
            select(&keys, "HS384", Some("a")).unwrap_err(),
            KeyMiss::Algorithm
        );
        assert_eq!(select(&keys, "none", None).unwrap_err(), KeyMiss::Algorithm);
    }
}
