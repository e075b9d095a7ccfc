//! HTTP GETs for `http` verification gates: the one place that touches the HTTP client. The
//! client is synchronous; each GET runs on a blocking thread, bounded by the check's timeout.

use std::io::Read as _;
use std::time::Duration;

/// The most of a response body a GET reads.
pub(crate) const MAX_BODY: u64 = 1 << 20;

/// What a server answered: its status (whatever it is: a 500 is an answer), and up to
/// [`MAX_BODY`] of its body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HttpAnswer {
    pub(crate) status: u16,
    pub(crate) body: Vec<u8>,
}

/// Why a GET got no answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum HttpFailure {
    TimedOut,
    /// The client's words (a refused connection, a name that does not resolve, a bad URL).
    Failed(String),
}

/// One GET from this host. No proxy from the environment: a check talks to the machine's own
/// services. Redirects are followed.
pub(crate) async fn get(url: &str, timeout: Duration) -> Result<HttpAnswer, HttpFailure> {
    let owned = url.to_owned();
    // The client's own timeout ends the GET; this one only guards against a client that hangs.
    let guard = timeout + Duration::from_secs(1);
    match tokio::time::timeout(guard, tokio::task::spawn_blocking(move || get_blocking(&owned, timeout))).await {
        Err(_) => Err(HttpFailure::TimedOut),
        Ok(Err(e)) => Err(HttpFailure::Failed(e.to_string())),
        Ok(Ok(answer)) => answer,
    }
}

pub(crate) fn get_blocking(url: &str, timeout: Duration) -> Result<HttpAnswer, HttpFailure> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .proxy(None)
        .build()
        .into();
    let response = agent.get(url).call().map_err(|e| match e {
        ureq::Error::Timeout(_) => HttpFailure::TimedOut,
        ureq::Error::Io(e) if matches!(e.kind(), std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock) => {
            HttpFailure::TimedOut
        }
        e => HttpFailure::Failed(e.to_string()),
    })?;
    let status = response.status().as_u16();
    let mut body = Vec::new();
    response
        .into_body()
        .into_reader()
        .take(MAX_BODY)
        .read_to_end(&mut body)
        .map_err(|e| HttpFailure::Failed(format!("reading the body failed: {e}")))?;
    Ok(HttpAnswer { status, body })
}
