//! Internal logging: `tracing` events when the `tracing` feature is on,
//! nothing otherwise. Never pass a token, a secret or whole claims.

/// A `tracing` event at `$level` with target `tower_sliding_jwt`, or nothing
/// without the `tracing` feature (the arguments are then not evaluated).
#[allow(unused_macros)]
macro_rules! event {
    ($level:ident, $($arg:tt)+) => {{
        #[cfg(feature = "tracing")]
        {
            ::tracing::$level!(target: "tower_sliding_jwt", $($arg)+);
        }
    }};
}

#[allow(unused_imports)]
pub(crate) use event;
