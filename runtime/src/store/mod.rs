//! What duet keeps on disk, and how it keeps it safe: durable file operations ([`fsutil`]), the
//! checksummed journal ([`journal`]), the state directory's lock ([`lock`]) and the session
//! directories ([`session`]). Nothing here knows what a step or a platform is.

pub(crate) mod fsutil;
pub(crate) mod journal;
pub(crate) mod lock;
pub(crate) mod session;
