//! A table of hostile inputs, each with the exact status, challenge and reason.

mod common;

use common::*;
use http::{HeaderValue, Request, StatusCode};
use jsonwebtoken::{Algorithm, EncodingKey};
use tower_sliding_jwt::{GrpcResponder, Key, RejectionKind as K, SlidingJwtLayer};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layer {
    Hs256,
    Es256,
    Es384,
    Rs256,
    Ps256,
    EdDsa,
    /// HS256 requiring `iss: demo`, `aud: api` and `typ: JWT`.
    Strict,
}

const LAYERS: [Layer; 7] = [
    Layer::Hs256,
    Layer::Es256,
    Layer::Es384,
    Layer::Rs256,
    Layer::Ps256,
    Layer::EdDsa,
    Layer::Strict,
];

struct Case {
    name: &'static str,
    layer: Layer,
    request: Request<()>,
    kind: K,
}

fn hs() -> EncodingKey {
    EncodingKey::from_secret(SECRET)
}

fn valid_payload() -> String {
    claims_json(T0, T0 + 600, T0)
}

fn bearer(token: &str) -> Request<()> {
    get(token)
}

fn raw_authorization(value: &[u8]) -> Request<()> {
    let mut request = anonymous();
    request
        .headers_mut()
        .insert("authorization", HeaderValue::from_bytes(value).unwrap());
    request
}

fn hs_with_header(header: &str) -> String {
    forge(header, &valid_payload(), &hs(), Algorithm::HS256)
}

/// A token in every way valid, except that it was signed by someone else's key.
fn attacker_es256(header: &str) -> String {
    let key = EncodingKey::from_ec_pem(ES256_OTHER_PRIVATE.as_bytes()).unwrap();
    forge(header, &valid_payload(), &key, Algorithm::ES256)
}

/// A token signed with the right key whose `iss`/`aud` members and `typ` vary.
fn strict(members: &str, typ: &str) -> String {
    let payload = format!(r#"{{{members},"exp":{},"sub":"alice"}}"#, T0 + 600);
    forge(
        &format!(r#"{{"alg":"HS256","typ":"{typ}"}}"#),
        &payload,
        &hs(),
        Algorithm::HS256,
    )
}

fn cases() -> Vec<Case> {
    let valid = forge_hs256(&valid_payload());
    let (h, p, s) = {
        let mut parts = valid.split('.');
        (
            parts.next().unwrap().to_owned(),
            parts.next().unwrap().to_owned(),
            parts.next().unwrap().to_owned(),
        )
    };
    let none_token = |alg: &str| {
        format!(
            "{}.{}.",
            b64(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#)),
            p
        )
    };
    let case = |name, layer, request, kind| Case {
        name,
        layer,
        request,
        kind,
    };
    use Layer::*;
    vec![
        // Algorithm games.
        case(
            "alg none, empty signature",
            Hs256,
            bearer(&none_token("none")),
            K::AlgorithmNotAllowed,
        ),
        case(
            "alg None",
            Hs256,
            bearer(&none_token("None")),
            K::AlgorithmNotAllowed,
        ),
        case(
            "alg NONE",
            Hs256,
            bearer(&none_token("NONE")),
            K::AlgorithmNotAllowed,
        ),
        case(
            "alg nOnE with the HS256 signature kept",
            Hs256,
            bearer(&format!("{}.{p}.{s}", b64(r#"{"alg":"nOnE"}"#))),
            K::AlgorithmNotAllowed,
        ),
        case(
            "alg missing",
            Hs256,
            bearer(&hs_with_header(r#"{"typ":"JWT"}"#)),
            K::MalformedToken,
        ),
        case(
            "alg not a string",
            Hs256,
            bearer(&hs_with_header(r#"{"alg":["HS256"]}"#)),
            K::MalformedToken,
        ),
        case(
            "alg hs256 lowercase",
            Hs256,
            bearer(&hs_with_header(r#"{"alg":"hs256"}"#)),
            K::AlgorithmNotAllowed,
        ),
        case(
            "HS384 validly signed with the secret but not configured",
            Hs256,
            bearer(&forge(
                r#"{"alg":"HS384"}"#,
                &valid_payload(),
                &hs(),
                Algorithm::HS384,
            )),
            K::AlgorithmNotAllowed,
        ),
        case(
            "ES256 layer: HS256 signed with the EC public key as secret",
            Es256,
            bearer(&forge(
                r#"{"alg":"HS256"}"#,
                &valid_payload(),
                &EncodingKey::from_secret(ES256_PUBLIC.as_bytes()),
                Algorithm::HS256,
            )),
            K::AlgorithmNotAllowed,
        ),
        case(
            "RS256 layer: HS256 signed with the RSA public key as secret",
            Rs256,
            bearer(&forge(
                r#"{"alg":"HS256"}"#,
                &valid_payload(),
                &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()),
                Algorithm::HS256,
            )),
            K::AlgorithmNotAllowed,
        ),
        case(
            "EdDSA layer: HS512 signed with the Ed25519 public key as secret",
            EdDsa,
            bearer(&forge(
                r#"{"alg":"HS512"}"#,
                &valid_payload(),
                &EncodingKey::from_secret(ED25519_PUBLIC.as_bytes()),
                Algorithm::HS512,
            )),
            K::AlgorithmNotAllowed,
        ),
        case(
            "ES256 layer: attacker's ES256 key",
            Es256,
            bearer(&attacker_es256(r#"{"alg":"ES256"}"#)),
            K::InvalidSignature,
        ),
        // Key selection.
        case(
            "unknown kid",
            Hs256,
            bearer(&hs_with_header(r#"{"alg":"HS256","kid":"other"}"#)),
            K::UnknownKey,
        ),
        case(
            "kid path traversal",
            Hs256,
            bearer(&hs_with_header(
                r#"{"alg":"HS256","kid":"../../../../dev/null"}"#,
            )),
            K::UnknownKey,
        ),
        case(
            "kid SQL injection",
            Hs256,
            bearer(&hs_with_header(r#"{"alg":"HS256","kid":"' OR '1'='1"}"#)),
            K::UnknownKey,
        ),
        case(
            "kid 4000 bytes",
            Hs256,
            bearer(&hs_with_header(&format!(
                r#"{{"alg":"HS256","kid":"{}"}}"#,
                "k".repeat(4000)
            ))),
            K::UnknownKey,
        ),
        case(
            "kid not a string",
            Hs256,
            bearer(&hs_with_header(r#"{"alg":"HS256","kid":7}"#)),
            K::MalformedToken,
        ),
        case(
            "jku pointing elsewhere is ignored",
            Es256,
            bearer(&attacker_es256(
                r#"{"alg":"ES256","jku":"https://attacker.example/jwks.json"}"#,
            )),
            K::InvalidSignature,
        ),
        case(
            "x5u is ignored",
            Es256,
            bearer(&attacker_es256(
                r#"{"alg":"ES256","x5u":"https://attacker.example/cert.pem"}"#,
            )),
            K::InvalidSignature,
        ),
        case(
            "embedded jwk is ignored",
            Es256,
            bearer(&attacker_es256(
                r#"{"alg":"ES256","jwk":{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}}"#,
            )),
            K::InvalidSignature,
        ),
        case(
            "x5c chain is ignored",
            Es256,
            bearer(&attacker_es256(
                r#"{"alg":"ES256","x5c":["MIIBszCCAVmgAwIBAgIU"]}"#,
            )),
            K::InvalidSignature,
        ),
        // Valid signatures, wrong context.
        case(
            "valid token for another audience",
            Strict,
            bearer(&strict(r#""iss":"demo","aud":"other-api""#, "JWT")),
            K::WrongAudience,
        ),
        case(
            "valid token from another issuer",
            Strict,
            bearer(&strict(r#""iss":"evil","aud":"api""#, "JWT")),
            K::WrongIssuer,
        ),
        case(
            "valid token of another type",
            Strict,
            bearer(&strict(r#""iss":"demo","aud":"api""#, "at+jwt")),
            K::WrongType,
        ),
        case(
            "valid token without an audience",
            Strict,
            bearer(&strict(r#""iss":"demo""#, "JWT")),
            K::WrongAudience,
        ),
        // Critical headers.
        case(
            "crit lists exp",
            Hs256,
            bearer(&hs_with_header(r#"{"alg":"HS256","crit":["exp"],"exp":1}"#)),
            K::UnsupportedCritical,
        ),
        case(
            "crit b64=false",
            Hs256,
            bearer(&hs_with_header(
                r#"{"alg":"HS256","b64":false,"crit":["b64"]}"#,
            )),
            K::UnsupportedCritical,
        ),
        case(
            "crit empty",
            Hs256,
            bearer(&hs_with_header(r#"{"alg":"HS256","crit":[]}"#)),
            K::UnsupportedCritical,
        ),
        case(
            "crit null",
            Hs256,
            bearer(&hs_with_header(r#"{"alg":"HS256","crit":null}"#)),
            K::UnsupportedCritical,
        ),
        // Shape and encoding.
        case(
            "two segments",
            Hs256,
            bearer(&format!("{h}.{p}")),
            K::MalformedToken,
        ),
        case(
            "four segments",
            Hs256,
            bearer(&format!("{h}.{p}.{s}.{s}")),
            K::MalformedToken,
        ),
        case("dots only", Hs256, bearer(".."), K::MalformedToken),
        case(
            "empty signature",
            Hs256,
            bearer(&format!("{h}.{p}.")),
            K::InvalidSignature,
        ),
        case(
            "truncated signature",
            Hs256,
            bearer(&format!("{h}.{p}.{}", &s[..40])),
            K::InvalidSignature,
        ),
        case(
            "signature with stray trailing bits",
            Hs256,
            bearer(&format!("{h}.{p}.{}", &s[..39])),
            K::MalformedToken,
        ),
        case(
            "signature of another token",
            Hs256,
            bearer(&format!("{h}.{}.{s}", b64(claims_json(T0, T0 + 9999, T0)))),
            K::InvalidSignature,
        ),
        case(
            "other secret",
            Hs256,
            bearer(&forge(
                r#"{"alg":"HS256"}"#,
                &valid_payload(),
                &EncodingKey::from_secret(&[7u8; 32]),
                Algorithm::HS256,
            )),
            K::InvalidSignature,
        ),
        case(
            "padding inside the token",
            Hs256,
            bearer(&format!("{h}.{p}=.{s}")),
            K::MalformedCredentials,
        ),
        case(
            "padded signature",
            Hs256,
            bearer(&format!("{h}.{p}.{s}=")),
            K::MalformedToken,
        ),
        case(
            "signature in the standard alphabet",
            Hs256,
            bearer(&format!("{h}.{p}.+/+/")),
            K::MalformedToken,
        ),
        case(
            "payload altered after signing",
            Hs256,
            bearer(&format!("{h}.{}.{s}", p.clone() + "+")),
            K::InvalidSignature,
        ),
        case(
            "header not base64url",
            Hs256,
            bearer(&format!("~~~~.{p}.{s}")),
            K::MalformedToken,
        ),
        case(
            "characters outside token68",
            Hs256,
            bearer(&format!("!!!.{p}.{s}")),
            K::MalformedCredentials,
        ),
        case(
            "header not JSON",
            Hs256,
            bearer(&format!("{}.{p}.{s}", b64("alg=HS256"))),
            K::MalformedToken,
        ),
        case(
            "header a JSON array",
            Hs256,
            bearer(&format!("{}.{p}.{s}", b64(r#"["HS256"]"#))),
            K::MalformedToken,
        ),
        case(
            "header with duplicate alg",
            Hs256,
            bearer(&hs_with_header(r#"{"alg":"none","alg":"HS256"}"#)),
            K::MalformedToken,
        ),
        case(
            "kid deeply nested",
            Hs256,
            bearer(&hs_with_header(&format!(
                r#"{{"alg":"HS256","kid":{}{}}}"#,
                "[".repeat(1000),
                "]".repeat(1000)
            ))),
            K::MalformedToken,
        ),
        // Claims.
        case(
            "payload a JSON array",
            Hs256,
            bearer(&forge_hs256(r#"[1800000600]"#)),
            K::InvalidClaims,
        ),
        case(
            "payload not JSON",
            Hs256,
            bearer(&forge_hs256("exp=1800000600")),
            K::InvalidClaims,
        ),
        case(
            "payload not UTF-8",
            Hs256,
            bearer(&forge(
                r#"{"alg":"HS256"}"#,
                "{\"exp\":1800000600,\"x\":\"\u{0}\"}",
                &hs(),
                Algorithm::HS256,
            )),
            K::InvalidClaims,
        ),
        case(
            "exp missing",
            Hs256,
            bearer(&forge_hs256(r#"{"sub":"alice"}"#)),
            K::InvalidClaims,
        ),
        case(
            "exp a string",
            Hs256,
            bearer(&forge_hs256(r#"{"exp":"1800000600"}"#)),
            K::InvalidClaims,
        ),
        case(
            "exp a float",
            Hs256,
            bearer(&forge_hs256(r#"{"exp":1800000600.5}"#)),
            K::InvalidClaims,
        ),
        case(
            "exp huge",
            Hs256,
            bearer(&forge_hs256(r#"{"exp":1e400}"#)),
            K::InvalidClaims,
        ),
        case(
            "exp beyond i64",
            Hs256,
            bearer(&forge_hs256(r#"{"exp":99999999999999999999}"#)),
            K::InvalidClaims,
        ),
        case(
            "exp null",
            Hs256,
            bearer(&forge_hs256(r#"{"exp":null}"#)),
            K::InvalidClaims,
        ),
        case(
            "exp negative",
            Hs256,
            bearer(&forge_hs256(r#"{"exp":-1}"#)),
            K::Expired,
        ),
        case(
            "duplicate exp member",
            Hs256,
            bearer(&forge_hs256(r#"{"exp":1,"exp":1900000000}"#)),
            K::InvalidClaims,
        ),
        case(
            "nbf a string",
            Hs256,
            bearer(&forge_hs256(r#"{"exp":1800000600,"nbf":"0"}"#)),
            K::InvalidClaims,
        ),
        case(
            "payload deeply nested",
            Hs256,
            bearer(&forge_hs256(&format!(
                r#"{{"exp":1800000600,"x":{}{}}}"#,
                "[".repeat(3000),
                "]".repeat(3000)
            ))),
            K::InvalidClaims,
        ),
        case(
            "oversized token",
            Hs256,
            bearer(&forge_hs256(&format!(
                r#"{{"exp":1800000600,"pad":"{}"}}"#,
                "x".repeat(9000)
            ))),
            K::TokenTooLarge,
        ),
        // Credentials framing.
        case(
            "Bearer without a token",
            Hs256,
            raw_authorization(b"Bearer"),
            K::MalformedCredentials,
        ),
        case(
            "Bearer with spaces only",
            Hs256,
            raw_authorization(b"Bearer    "),
            K::MalformedCredentials,
        ),
        case(
            "Bearer with two tokens",
            Hs256,
            raw_authorization(format!("Bearer {valid} {valid}").as_bytes()),
            K::MalformedCredentials,
        ),
        case(
            "Bearer with a comma",
            Hs256,
            raw_authorization(format!("Bearer {valid},x").as_bytes()),
            K::MalformedCredentials,
        ),
        case(
            "non-UTF-8 bytes",
            Hs256,
            raw_authorization(b"Bearer \xe9\xff.\xfe.\xfd"),
            K::MalformedCredentials,
        ),
        case(
            "two Authorization headers",
            Hs256,
            {
                let mut request = get(&valid);
                request.headers_mut().append(
                    "authorization",
                    HeaderValue::from_str(&format!("Bearer {valid}")).unwrap(),
                );
                request
            },
            K::DuplicateCredentials,
        ),
        case(
            "Basic credentials",
            Hs256,
            raw_authorization(b"Basic YWxpY2U6d29uZGVybGFuZA=="),
            K::MissingCredentials,
        ),
    ]
}

fn builder_for(layer: Layer) -> tower_sliding_jwt::SlidingJwtBuilder<Key, Claimset> {
    let key = match layer {
        Layer::Hs256 | Layer::Strict => hs256(),
        Layer::Es256 => es256(),
        Layer::Es384 => Key::from_pem(Algorithm::ES384, ES384_PRIVATE).unwrap(),
        Layer::Rs256 => rs256(),
        Layer::Ps256 => Key::from_pem(Algorithm::PS256, RSA_PRIVATE).unwrap(),
        Layer::EdDsa => eddsa(),
    };
    let builder = SlidingJwtLayer::builder(key).with_clock(clock());
    match layer {
        Layer::Strict => builder
            .with_issuer("demo")
            .with_audience("api")
            .with_required_typ("JWT"),
        _ => builder,
    }
}

fn layer_for(layer: Layer) -> SlidingJwtLayer<Key, Claimset> {
    builder_for(layer).build().unwrap()
}

#[tokio::test]
async fn hostile_inputs_get_the_exact_rejection() {
    // The valid tokens themselves pass, so each case fails for its own reason.
    let layers = LAYERS.map(|l| (l, layer_for(l)));
    let hs_app = app(&layers[0].1);
    assert_eq!(
        send(&hs_app, get(&forge_hs256(&valid_payload())))
            .await
            .status(),
        StatusCode::OK
    );
    let strict_app = app(&layers[6].1);
    let good = strict(r#""iss":"demo","aud":"api""#, "JWT");
    assert_eq!(send(&strict_app, get(&good)).await.status(), StatusCode::OK);

    let cases = cases();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let mut failures = Vec::new();
    for case in cases {
        let (_, layer) = layers.iter().find(|(l, _)| *l == case.layer).unwrap();
        let response = send(&app(layer), case.request).await;
        let (status, challenge_text) = match case.kind {
            K::MissingCredentials => (StatusCode::UNAUTHORIZED, "Bearer"),
            K::MalformedCredentials | K::DuplicateCredentials => {
                (StatusCode::BAD_REQUEST, INVALID_REQUEST)
            }
            _ => (StatusCode::UNAUTHORIZED, INVALID_TOKEN),
        };
        let got = (
            response.status(),
            challenge(&response).to_owned(),
            rejection(&response),
        );
        if got != (status, challenge_text.to_owned(), Some(case.kind)) {
            failures.push(format!(
                "{} ({:?}): expected {:?} {:?}, got {:?}",
                case.name, case.layer, status, case.kind, got
            ));
        }
        if !response.body().is_empty() {
            failures.push(format!("{}: non-empty body", case.name));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// The same table through the gRPC responder: every rejection is a
/// trailers-only `UNAUTHENTICATED` with the same precise reason.
#[tokio::test]
async fn hostile_inputs_over_grpc_are_unauthenticated() {
    let layers = LAYERS.map(|l| {
        (
            l,
            builder_for(l)
                .with_responder(GrpcResponder)
                .build()
                .unwrap(),
        )
    });
    let mut failures = Vec::new();
    let cases = cases();
    let count = cases.len();
    for case in cases {
        let (_, layer) = layers.iter().find(|(l, _)| *l == case.layer).unwrap();
        let service = tower::Layer::layer(
            layer,
            tower::service_fn(|_req: Request<()>| async {
                Ok::<_, std::convert::Infallible>(http::Response::new(String::from(
                    "reached the service",
                )))
            }),
        );
        let response = tower::ServiceExt::oneshot(service, case.request)
            .await
            .unwrap();
        let got = (
            response.status(),
            response
                .headers()
                .get("grpc-status")
                .map(|v| v.to_str().unwrap().to_owned()),
            response
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_owned()),
            rejection(&response),
        );
        let expected = (
            StatusCode::OK,
            Some("16".to_owned()),
            Some("application/grpc".to_owned()),
            Some(case.kind),
        );
        if got != expected || !response.body().is_empty() {
            failures.push(format!("{} ({:?}): got {:?}", case.name, case.layer, got));
        }
    }
    assert!(count >= 40);
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}
