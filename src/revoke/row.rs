//! A revocation as one row of a SQL store (SQLite's `DurableStore`,
//! PostgreSQL's `PostgresStore`): one `record` blob per revocation, the
//! same bytes in both.

use super::{EndReason, MAX_REVOCATION_SECS, Revocation, RevocationTarget};

/// Kind, `until` and `before` in front of the id.
const FIXED: usize = 17;
/// The longest id kept (`sid`, `jti`, `sub`, a cut-off's kept `jti` and
/// `sid` together), as the Redis store: longer is refused before anything
/// is written, and a longer one read back is damage.
pub(crate) const MAX_ID_BYTES: usize = 16 * 1024;
/// The longest `record` written or read back.
pub(crate) const MAX_RECORD_BYTES: usize = FIXED + MAX_ID_BYTES;

/// A revocation as one row's `record`: `kind: u8 | until: i64 LE |
/// before: i64 LE | id bytes` (a cut-off's id is `{keep length}:{keep}{sid}`).
pub(crate) fn encode(revocation: &Revocation) -> Vec<u8> {
    // A session's cut-off keeps its `keep` and `sid` in the id field as
    // `{keep length}:{keep}{sid}`.
    let cutoff;
    let reason = EndReason::code(revocation.reason);
    let (kind, id, before) = match &revocation.target {
        RevocationTarget::Session(sid) => (b's', sid.as_str(), reason),
        RevocationTarget::Superseded { sid, before, keep } => {
            cutoff = format!("{}:{keep}{sid}", keep.len());
            (b'c', cutoff.as_str(), *before)
        }
        RevocationTarget::Token(jti) => (b'j', jti.as_str(), reason),
        RevocationTarget::Subject { subject, before } => (b'u', subject.as_str(), *before),
        RevocationTarget::Replaced { jti, used_at, .. } => (b'r', jti.as_str(), *used_at),
    };
    let mut body = Vec::with_capacity(FIXED + id.len());
    body.push(kind);
    body.extend_from_slice(&revocation.until.to_le_bytes());
    body.extend_from_slice(&before.to_le_bytes());
    body.extend_from_slice(id.as_bytes());
    body
}

/// The revocation in a row's `record`, `None` when it is not one.
pub(crate) fn decode(body: &[u8]) -> Option<Revocation> {
    let (&kind, rest) = body.split_first()?;
    let until = i64::from_le_bytes(rest.get(..8)?.try_into().ok()?);
    let before = i64::from_le_bytes(rest.get(8..16)?.try_into().ok()?);
    let id = std::str::from_utf8(rest.get(16..)?).ok()?.to_owned();
    let target = match kind {
        b's' => RevocationTarget::Session(id),
        b'j' => RevocationTarget::Token(id),
        b'u' => RevocationTarget::Subject {
            subject: id,
            before,
        },
        b'c' => {
            let (length, rest) = id.split_once(':')?;
            let length: usize = length.parse().ok()?;
            if !rest.is_char_boundary(length) {
                return None;
            }
            let (keep, sid) = rest.split_at(length);
            RevocationTarget::Superseded {
                sid: sid.to_owned(),
                before,
                keep: keep.to_owned(),
            }
        }
        // The subject of a mark is not kept in the file: a mark read back
        // counts against the budget of marks only.
        b'r' => RevocationTarget::Replaced {
            jti: id,
            used_at: before,
            subject: None,
        },
        _ => return None,
    };
    // A session's (or a lone token's) `before` carries why it ended.
    let reason = match kind {
        b's' | b'j' => EndReason::from_code(before),
        _ => None,
    };
    Some(Revocation {
        target,
        until,
        reason,
    })
}

/// The revocation in a `record` read back from where others can write
/// (a shared database), at `now`: `None` unless it is one a writer of this
/// crate could have written (within [`MAX_RECORD_BYTES`], its ids within
/// [`MAX_ID_BYTES`]), and its `until` cut to the longest any revocation can
/// need (a longer one was planted, or written by a clock far ahead).
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) fn read_back(record: &[u8], now: i64) -> Option<Revocation> {
    if record.len() > MAX_RECORD_BYTES {
        return None;
    }
    let mut revocation = decode(record)?;
    let longest = match &revocation.target {
        RevocationTarget::Session(id)
        | RevocationTarget::Token(id)
        | RevocationTarget::Subject { subject: id, .. }
        | RevocationTarget::Replaced { jti: id, .. } => id.len(),
        RevocationTarget::Superseded { sid, keep, .. } => sid.len() + keep.len(),
    };
    if longest > MAX_ID_BYTES {
        return None;
    }
    revocation.until = revocation
        .until
        .min(now.saturating_add(MAX_REVOCATION_SECS));
    Some(revocation)
}

/// Reads `record` as a shared database's row is read back, and checks every
/// bound it must keep (fuzzing only).
#[cfg(fuzzing)]
pub(crate) fn fuzz_record(record: &[u8]) {
    const NOW: i64 = 1_800_000_000;
    let Some(revocation) = read_back(record, NOW) else {
        return;
    };
    assert!(revocation.until <= NOW + MAX_REVOCATION_SECS);
    // What was accepted is written back within the bounds, and reads back
    // as the same revocation.
    let again = encode(&revocation);
    assert!(again.len() <= MAX_RECORD_BYTES);
    assert_eq!(read_back(&again, NOW).as_ref(), Some(&revocation));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_read_back_is_bounded() {
        const NOW: i64 = 1_800_000_000;
        let session = |sid: &str, until: i64| {
            encode(&Revocation {
                target: RevocationTarget::Session(sid.into()),
                until,
                reason: None,
            })
        };
        let far = read_back(&session("s", i64::MAX), NOW).unwrap();
        assert_eq!(far.until, NOW + MAX_REVOCATION_SECS);
        assert!(read_back(&session(&"x".repeat(MAX_ID_BYTES), NOW + 1), NOW).is_some());
        assert!(read_back(&session(&"x".repeat(MAX_ID_BYTES + 1), NOW + 1), NOW).is_none());
        assert!(read_back(b"s", NOW).is_none());
        assert!(read_back(&[b'?'; 40], NOW).is_none());
    }

    #[test]
    fn every_target_reads_back_as_written() {
        for target in [
            RevocationTarget::Session("s|1:x".into()),
            RevocationTarget::Token("j".into()),
            RevocationTarget::Subject {
                subject: "alice".into(),
                before: 5,
            },
            RevocationTarget::Superseded {
                sid: "s:1|2".into(),
                before: 7,
                keep: "k:é|9".into(),
            },
            RevocationTarget::Replaced {
                jti: "j".into(),
                used_at: 3,
                subject: None,
            },
        ] {
            let revocation = Revocation {
                target,
                until: 99,
                reason: None,
            };
            assert_eq!(decode(&encode(&revocation)), Some(revocation));
        }
    }
}
