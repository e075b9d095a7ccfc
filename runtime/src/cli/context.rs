//! What every upgrade command is given: the state directory, the machine's inventory, the
//! runtime's options. Its own module, so that the commands and the views (`status`, `log`)
//! both depend on it and not on each other.

use std::path::PathBuf;

use crate::cli::args::StateArgs;
use crate::run;
use crate::store::layout::StateDir;

/// What every upgrade command is given.
#[derive(Clone, Debug)]
pub(crate) struct Context {
    pub(crate) state: StateDir,
    pub(crate) inventory: Option<PathBuf>,
    pub(crate) options: run::Options,
    pub(crate) quiet: bool,
    /// `--keyring`: minisign public keys trusted to sign templates.
    pub(crate) keyring: Option<PathBuf>,
}

impl Context {
    /// For the read-only commands (`status`, `log`).
    pub(crate) fn reading(args: &StateArgs) -> Self {
        Self {
            state: StateDir::new(args.state_dir.clone().unwrap_or_else(default_state_dir)),
            inventory: args.inventory.clone(),
            options: run::Options::default(),
            quiet: false,
            keyring: None,
        }
    }
}

/// `$XDG_STATE_HOME/duet`, else `~/.local/state/duet`, else `./.duet-state`.
fn default_state_dir() -> PathBuf {
    let from = |var: &str| std::env::var_os(var).filter(|v| !v.is_empty()).map(PathBuf::from);
    from("XDG_STATE_HOME")
        .or_else(|| from("HOME").map(|h| h.join(".local/state")))
        .map_or_else(|| PathBuf::from(".duet-state"), |d| d.join("duet"))
}
