//! The environment marks an action's processes carry, spelled once.

/// The environment marks an action's processes carry (`DUET_SESSION`, `DUET_STEP`,
/// `DUET_ATTEMPT`): how duet finds what an attempt left running, after a crash, at a timeout,
/// and before another attempt of the same step starts. The one place they are spelled.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Marks(pub(super) Vec<(&'static str, String)>);

impl Marks {
    /// One attempt of a step.
    pub(crate) fn attempt(session: &str, step: &str, attempt: u32) -> Self {
        Self(vec![
            ("DUET_SESSION", session.to_owned()),
            ("DUET_STEP", step.to_owned()),
            ("DUET_ATTEMPT", attempt.to_string()),
        ])
    }

    /// Every attempt of a step.
    pub(crate) fn step(session: &str, step: &str) -> Self {
        Self(vec![("DUET_SESSION", session.to_owned()), ("DUET_STEP", step.to_owned())])
    }

    /// Every action process of a session.
    pub(crate) fn session(session: &str) -> Self {
        Self(vec![("DUET_SESSION", session.to_owned())])
    }

    /// As environment variables, for the process to inherit.
    pub(crate) fn env(&self) -> impl Iterator<Item = (String, String)> + '_ {
        self.0.iter().map(|(n, v)| ((*n).to_owned(), v.clone()))
    }

    pub(super) fn wanted(&self) -> Vec<Vec<u8>> {
        self.0.iter().map(|(n, v)| format!("{n}={v}").into_bytes()).collect()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
