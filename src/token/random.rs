//! Token and session ids: 128 random bits from the operating system, handed
//! out from a per-thread buffer.

use std::cell::RefCell;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::{IssueError, IssueErrorKind};

/// Random bytes from the operating system's CSPRNG (`getrandom`), fetched
/// 1 KiB at a time per thread: one system call per 64 ids instead of one per
/// id. Every byte comes from the OS and is handed out once, then wiped; there
/// is no user-space generator to seed or predict. (A process that forks after
/// issuing tokens and issues more in the child could repeat the ids left in
/// the forking thread's buffer: fork before serving, as servers do.)
struct Entropy {
    bytes: [u8; 1024],
    used: usize,
}

thread_local! {
    static ENTROPY: RefCell<Entropy> = const {
        RefCell::new(Entropy { bytes: [0; 1024], used: 1024 })
    };
}

/// Fills `out` with fresh randomness from this thread's buffer of OS
/// randomness, refilled when used up.
fn fill_random(out: &mut [u8; 16]) -> Result<(), IssueError> {
    let failed = |e: getrandom::Error| IssueError::new(IssueErrorKind::Random, Some(Box::new(e)));
    let from_buffer = ENTROPY.try_with(|cell| {
        let Ok(mut entropy) = cell.try_borrow_mut() else {
            return Ok(false);
        };
        if entropy.used + out.len() > entropy.bytes.len() {
            getrandom::fill(&mut entropy.bytes).map_err(failed)?;
            entropy.used = 0;
        }
        let start = entropy.used;
        out.copy_from_slice(&entropy.bytes[start..start + 16]);
        // Each byte is handed out once: wipe it.
        entropy.bytes[start..start + 16].fill(0);
        entropy.used += 16;
        Ok(true)
    });
    match from_buffer {
        Ok(Ok(true)) => Ok(()),
        Ok(Err(error)) => Err(error),
        // Thread teardown or re-entrance: ask the OS directly.
        _ => getrandom::fill(out).map_err(failed),
    }
}

/// A fresh 128-bit random id, base64url (22 characters).
pub(crate) fn random_id() -> Result<String, IssueError> {
    let mut bytes = [0u8; 16];
    fill_random(&mut bytes)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffered_randomness_never_repeats_across_refills() {
        let ids: std::collections::HashSet<String> =
            (0..500).map(|_| random_id().unwrap()).collect();
        assert_eq!(ids.len(), 500, "64 ids per refill, each handed out once");
        ENTROPY.with(|cell| {
            let entropy = cell.borrow();
            assert!(
                entropy.bytes[..entropy.used].iter().all(|&b| b == 0),
                "handed-out bytes are wiped"
            );
        });
    }

    #[test]
    fn random_ids_differ() {
        let a = random_id().unwrap();
        assert_eq!(a.len(), 22);
        assert_ne!(a, random_id().unwrap());
    }
}
