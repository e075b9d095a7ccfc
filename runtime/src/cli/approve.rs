//! `duet approve --reason TEXT`: lets a `duet run` that waits at an approval go on. It takes no
//! lock (the waiting duet holds it): it leaves the approval, with who and why, where the waiting
//! step looks (`session/approvals/`), and that step journals it. With no duet waiting (stopped
//! by Ctrl-C), `duet resume` finds it and goes on.

use crate::cli::Context;
use crate::cli::upgrade::user;
use crate::error::{Error, Result};
use crate::outcome::Outcome;
use crate::run::ApprovalGiven;
use crate::store::fsutil;
use crate::store::layout::SessionDir;
use crate::store::lock::StateLock;
use crate::store::session::View;
use crate::view::console;

pub(crate) fn approve(ctx: &Context, reason: &str) -> Outcome {
    match give(ctx, reason) {
        Ok(said) => console::print(&format!("{said}\n")),
        Err(e) => {
            console::eprintln(&e.report(None));
            Outcome::Failure
        }
    }
}

fn give(ctx: &Context, reason: &str) -> Result<String> {
    ctx.state.usable()?;
    let driven = StateLock::holder(&ctx.state.root).is_some();
    let dir = ctx.state.session();
    let view = View::read(&dir, driven, false)?;
    let pending = view.as_ref().and_then(|v| v.progress.awaited_approval());
    let Some((request, step)) = pending else {
        return Err(Error::new(format!("nothing awaits approval in {}", ctx.state.root.display())).help(
            "an approval is awaited only where `duet run` (or `duet resume`) stopped at one: `duet status` shows it",
        ));
    };
    let file = SessionDir(&dir).approval(&step);
    let given = ApprovalGiven { user: user(), reason: reason.to_owned() };
    let text = serde_json::to_string(&given).expect("plain data serializes") + "\n";
    let parent = file.parent().expect("an approval file is in a directory");
    fsutil::create_dir_all_durable(parent).map_err(fsutil::at("create", parent))?;
    fsutil::write_atomic(&file, text.as_bytes()).map_err(fsutil::at("write", &file))?;
    Ok(if driven {
        format!("{step} of {request} approved by {}: the waiting duet goes on", given.user)
    } else {
        format!("{step} of {request} approved by {}: no duet is waiting; `duet resume` goes on", given.user)
    })
}
