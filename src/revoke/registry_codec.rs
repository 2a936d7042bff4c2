//! A registry row as stored in a database or a Redis hash: a small JSON
//! object, read back with its bounds checked (a planted or damaged row is
//! refused, never trusted).

use serde::{Deserialize, Serialize};

use super::{MAX_SID_BYTES, MAX_SUBJECT_BYTES, MAX_USER_AGENT_BYTES, SessionRow};

/// The longest stored row: every field at its bound, with room for JSON
/// escapes.
pub(crate) const MAX_ROW_BYTES: usize =
    2 * (MAX_SID_BYTES + MAX_SUBJECT_BYTES + 2 * MAX_USER_AGENT_BYTES) * 6 + 256;

#[derive(Serialize)]
struct Stored<'a> {
    sid: &'a str,
    sub: &'a str,
    created: i64,
    last_seen: i64,
    expires: i64,
    cap: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ua: Option<&'a str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    addr: Option<&'a str>,
}

/// `row` as stored.
pub(crate) fn encode(row: &SessionRow) -> String {
    serde_json::to_string(&Stored {
        sid: &row.sid,
        sub: &row.subject,
        created: row.created,
        last_seen: row.last_seen,
        expires: row.expires,
        cap: row.cap,
        ua: row.user_agent.as_deref(),
        addr: row.address.as_deref(),
    })
    .unwrap_or_default()
}

/// A stored row, or `None` when it is not one this crate wrote (too long,
/// a field out of bounds).
pub(crate) fn decode(text: &str) -> Option<SessionRow> {
    if text.len() > MAX_ROW_BYTES {
        return None;
    }
    // Owned strings: a JSON escape cannot be borrowed.
    #[derive(Deserialize)]
    struct Owned {
        sid: String,
        sub: String,
        created: i64,
        last_seen: i64,
        expires: i64,
        cap: i64,
        #[serde(default)]
        ua: Option<String>,
        #[serde(default)]
        addr: Option<String>,
    }
    let stored: Owned = serde_json::from_str(text).ok()?;
    let short = |text: &Option<String>| {
        text.as_ref()
            .is_none_or(|t| t.len() <= MAX_USER_AGENT_BYTES)
    };
    if stored.sid.is_empty()
        || stored.sid.len() > MAX_SID_BYTES
        || stored.sub.len() > MAX_SUBJECT_BYTES
        || !short(&stored.ua)
        || !short(&stored.addr)
    {
        return None;
    }
    Some(SessionRow {
        sid: stored.sid,
        subject: stored.sub,
        created: stored.created,
        last_seen: stored.last_seen,
        expires: stored.expires,
        cap: stored.cap,
        user_agent: stored.ua,
        address: stored.addr,
    })
}

/// Reads `text` as a stored row: what is accepted is within the bounds
/// and writes back as the same row.
#[cfg(fuzzing)]
pub(crate) fn fuzz_row(text: &str) {
    let Some(row) = decode(text) else {
        return;
    };
    assert!(row.sid.len() <= MAX_SID_BYTES && row.subject.len() <= MAX_SUBJECT_BYTES);
    let again = encode(&row);
    assert!(again.len() <= MAX_ROW_BYTES);
    assert_eq!(decode(&again), Some(row));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_come_back_as_written_and_out_of_bounds_ones_are_refused() {
        let mut row = SessionRow::new("s\"1", "ü\n");
        (row.created, row.last_seen, row.expires, row.cap) = (1, 2, 3, 4);
        row.user_agent = Some("x".repeat(MAX_USER_AGENT_BYTES));
        assert_eq!(decode(&encode(&row)), Some(row.clone()));
        row.user_agent = None;
        assert_eq!(decode(&encode(&row)), Some(row.clone()));
        row.sid = "s".repeat(MAX_SID_BYTES + 1);
        assert_eq!(decode(&encode(&row)), None);
        assert_eq!(decode("{}"), None);
        assert_eq!(decode("not json"), None);
    }
}
