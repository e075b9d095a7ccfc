//! `duet status`: reads the state directory and the machine and prints the status bar, or the
//! status JSON (`--json`). Read-only: it takes no lock, so it works while another process drives
//! the session.

use crate::cli::{Context, Outcome};
use crate::error::{Error, Result};
use crate::platform;
use crate::view::console;
use duet_contract::status::Status;

use crate::view::status::{gather, render, unbuilt};

pub(crate) fn status(ctx: &Context, json: bool) -> Outcome {
    let result = (|| -> Result<Status> {
        ctx.state.usable()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::new(format!("cannot start the runtime: {e}")))?;
        let in_session = ctx.state.in_session();
        match platform::existing(&ctx.state.root, ctx.inventory.as_deref(), in_session)? {
            Some(platform) => runtime.block_on(gather(&ctx.state, &platform)),
            None => Ok(unbuilt()),
        }
    })();
    match result {
        Ok(status) => {
            let text = if json {
                console::escape_json(serde_json::to_string_pretty(&status).expect("status serializes") + "\n")
            } else {
                render(&status)
            };
            console::print(&text)
        }
        Err(e) => {
            console::eprintln(&e.report(None));
            Outcome::Failure
        }
    }
}
