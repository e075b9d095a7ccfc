//! A service step: disable and stop a service (its startup type saved first, durably), stop
//! it, or restore its startup type and start it, each within the service timeout.

use std::future::Future;
use std::time::Duration;

use duet_compiler::compiled::{Op, Step};
use duet_compiler::inventory::Startup;
use duet_contract::record::{Entry, StepResult};

use super::{StepCtx, failed, platform_failed, success};
use crate::platform::{Platform, PlatformError};
use crate::state::Saved;

pub(super) async fn run<P: Platform>(ctx: &StepCtx<'_, P>, step: &Step) -> StepResult {
    let Some(name) = step.service.as_deref() else { return failed(format!("{} names no service", step.id), None) };
    let (platform, side, limit) = (ctx.platform, step.side, ctx.options.service_timeout);
    let outcome: std::result::Result<String, StepResult> = async {
        match step.op {
            Op::DisableAndStop => {
                let saved = if let Some(saved) = ctx.saved.get(name) {
                    *saved
                } else {
                    let now = platform.service(side, name).await.map_err(platform_failed)?;
                    let saved = Saved { startup: now.startup, running: now.running };
                    let entry = Entry::ServiceSaved {
                        service: name.to_owned(),
                        startup: saved.startup,
                        running: saved.running,
                    };
                    ctx.durable(entry).await.map_err(|e| StepResult::StorageFailed {
                        message: format!("cannot save {name}'s startup type: {e}"),
                    })?;
                    saved
                };
                platform.set_startup(side, name, Startup::Disabled).await.map_err(platform_failed)?;
                with_timeout(limit, format!("stopping {name}"), platform.stop_service(side, name)).await?;
                Ok(format!("startup type {} saved, set to disabled; stopped", saved.startup.as_str()))
            }
            Op::Stop => {
                with_timeout(limit, format!("stopping {name}"), platform.stop_service(side, name)).await?;
                Ok("stopped".into())
            }
            Op::RestoreAndStart => {
                let Some(saved) = ctx.saved.get(name) else {
                    return Err(failed(
                        format!("no saved startup type for {name}: the split did not record it"),
                        Some("set its startup type by hand on the Upgrade Side".into()),
                    ));
                };
                platform.set_startup(side, name, saved.startup).await.map_err(platform_failed)?;
                if saved.running {
                    with_timeout(limit, format!("starting {name}"), platform.start_service(side, name)).await?;
                    Ok(format!("startup type restored to {}; started", saved.startup.as_str()))
                } else {
                    Ok(format!(
                        "startup type restored to {}; not started (it was not running before the split)",
                        saved.startup.as_str()
                    ))
                }
            }
            other => Err(failed(format!("{} has an unknown service operation {other:?}", step.id), None)),
        }
    }
    .await;
    match outcome {
        Ok(message) => success(message),
        Err(result) => result,
    }
}

async fn with_timeout<T>(
    limit: Duration,
    what: String,
    fut: impl Future<Output = std::result::Result<T, PlatformError>>,
) -> std::result::Result<T, StepResult> {
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(platform_failed(e)),
        Err(_) => Err(failed(
            format!("{what} did not finish within {}", humantime::format_duration(limit)),
            Some(
                "if the application does not handle the loss of network or disks gracefully, restart the Upgrade Side"
                    .into(),
            ),
        )),
    }
}
