//! Logging macros that compile to nothing unless the `log` or `defmt` feature is on
//! (as smoltcp's `net_trace!` and embassy's `fmt.rs`). Format strings must be valid for both backends:
//! only `{}` placeholders, no `{:?}`.
#![allow(unused_macros)]

macro_rules! vn_log {
    ($level:ident, $($arg:expr),* $(,)?) => {{
        #[cfg(feature = "log")]
        { ::log::$level!($($arg),*); }
        #[cfg(feature = "defmt")]
        { ::defmt::$level!($($arg),*); }
        #[cfg(not(any(feature = "log", feature = "defmt")))]
        { $( let _ = &$arg; )* }
    }};
}

macro_rules! trace { ($($arg:expr),* $(,)?) => { vn_log!(trace, $($arg),*) }; }
macro_rules! debug { ($($arg:expr),* $(,)?) => { vn_log!(debug, $($arg),*) }; }
macro_rules! info { ($($arg:expr),* $(,)?) => { vn_log!(info, $($arg),*) }; }
macro_rules! warn { ($($arg:expr),* $(,)?) => { vn_log!(warn, $($arg),*) }; }
