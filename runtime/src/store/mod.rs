//! What duet keeps on disk, and how it keeps it safe: durable file operations ([`fsutil`]), the
//! checksummed journal ([`journal`]), the state directory's lock ([`lock`]), where everything is
//! ([`layout`]), directories built aside and committed ([`staged`]) and the sessions
//! ([`session`]). Nothing here knows what a step or a platform is.

pub(crate) mod error;
pub(crate) mod fsutil;
pub(crate) mod journal;
pub(crate) mod layout;
pub(crate) mod lock;
pub(crate) mod session;
pub(crate) mod staged;
