//! Cookie and bearer parsing, and the client's reading of renewed tokens,
//! on arbitrary header bytes.
#![no_main]

use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use tower_sliding_jwt::{BearerHeader, CookieSource, HeaderSource, TokenSource, TokenStore};

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    for (index, part) in data.split(|&b| b == 0xFF).take(4).enumerate() {
        let name = ["authorization", "cookie", "cookie", "x-token"][index];
        if let Ok(value) = HeaderValue::from_bytes(part) {
            headers.append(name, value);
        }
    }
    let sources: [&dyn TokenSource; 3] = [
        &BearerHeader::new(),
        &CookieSource::new("session").unwrap(),
        &HeaderSource::new("x-token").unwrap(),
    ];
    for source in sources {
        if let Ok(Some(token)) = source.extract(&headers) {
            // Whatever a source accepts is a non-empty run of token68 characters.
            assert!(!token.is_empty());
            assert!(
                token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b)),
                "{token:?}"
            );
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let store = TokenStore::empty();
        store.offer(text);
        let _ = store.expires_at();
    }
});
