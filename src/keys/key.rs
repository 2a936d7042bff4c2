//! [`Key`]: one algorithm, an optional `kid`, the verifying part and, when it
//! may sign, the private part — checked and paired when it is built.

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, EncodingKey};

use super::alg::alg_name;
use super::pem;
use super::provider::provider;
use super::public::{PublicParams, public_params};
use crate::error::{ConfigError, ConfigErrorKind, IssueError, IssueErrorKind};

/// One key: an algorithm, an optional `kid`, the public (or shared) part for
/// verification, and the private part when the key may sign.
#[derive(Clone)]
pub struct Key {
    /// Identifies the key material for the per-thread prepared keys; clones share it.
    id: u64,
    pub(super) alg: Algorithm,
    pub(super) kid: Option<String>,
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
    /// The public half as JWK parameters (`None` for HMAC).
    pub(super) fn public_params(&self) -> Option<&Arc<PublicParams>> {
        self.public.as_ref()
    }

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
        let encoding = match pem::private_pem(alg, pem)? {
            pem::Private::Der(der) => EncodingKey::from_ec_der(&der),
            pem::Private::Pem(block) => {
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
                        pem::needs(alg)
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
        let der = pem::private_der(alg, private_der.as_ref())?;
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
            let problem = pem::public_problem(alg, pem);
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
                pem::needs(alg)
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
