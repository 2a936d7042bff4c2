//! [`HeaderSource`]: a custom header carrying the bare token.

use http::{HeaderMap, HeaderName};

use super::TokenSource;
use super::syntax::{as_token, header_name, sensitive, single_value};
use crate::error::ConfigError;
use crate::reject::Rejection;
use crate::token::jws::is_compact;

/// A custom header carrying the bare token, e.g. `X-Auth-Token: <token>`;
/// renewed tokens go back in the same header.
#[derive(Debug, Clone)]
pub struct HeaderSource {
    name: HeaderName,
}

impl HeaderSource {
    /// Reads and writes the header `name`.
    ///
    /// # Errors
    /// [`ConfigErrorKind::InvalidHeaderName`](crate::ConfigErrorKind::InvalidHeaderName) as for [`BearerHeader::with_response_header`](crate::BearerHeader::with_response_header).
    pub fn new(name: &str) -> Result<Self, ConfigError> {
        Ok(Self {
            name: header_name(name)?,
        })
    }
}

impl TokenSource for HeaderSource {
    fn extract<'a>(&self, headers: &'a HeaderMap) -> Result<Option<&'a str>, Rejection> {
        match single_value(headers, &self.name)? {
            Some(value) => as_token(value.as_bytes()).map(Some),
            None => Ok(None),
        }
    }

    fn deliver(&self, token: &str, _max_age: i64, headers: &mut HeaderMap) {
        if !is_compact(token) {
            return;
        }
        if let Some(value) = sensitive(token.to_owned()) {
            headers.insert(self.name.clone(), value);
        }
    }

    fn is_delivered(&self, headers: &HeaderMap) -> bool {
        headers.contains_key(&self.name)
    }
}
