//! What duet shows: the live console of a running command ([`console`]), the status bar and
//! services ([`status`]), and the activity log ([`activity`]). Views read the store and the
//! state model; they change nothing.

pub(crate) mod activity;
pub(crate) mod console;
pub(crate) mod events;
pub(crate) mod follow;
pub(crate) mod report;
pub(crate) mod status;
pub(crate) mod tui;
