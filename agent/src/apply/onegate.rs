//! `REPORT_READY=YES`: once the final stage succeeded, tell OneGate the VM is ready, as
//! one-context's `net-99-report-ready` does (`onegate vm update --data READY=YES`):
//!
//! ```text
//! PUT $ONEGATE_ENDPOINT/vm
//! X-ONEGATE-TOKEN: <ONEGATE_TOKEN, else the CD's token.txt>
//! X-ONEGATE-VMID: <VMID>
//! Content-Type: application/x-www-form-urlencoded
//!
//! READY=YES
//! ```
//!
//! Once per instance (a done marker, set only when OneGate accepted it: a failed report is
//! tried again at the next boot). Connect errors, timeouts, 429 and 5xx are retried with
//! backoff (5 tries, 1 s doubling: `Settings::onegate`); other answers fail at once. The token is never logged nor
//! put in a message. The endpoint may be a host name: the sync's client resolves it with
//! hickory (no NSS), and speaks https too.

use super::Apply;
use crate::context::Secret;
use crate::plan::{OneGatePlan, Plan};
use crate::retry::{self, Backoff, GaveUp, Try};
use crate::state::State;
use crate::sync::http::{self, UploadBody};
use bytes::Bytes;
use http_body_util::BodyExt;
use std::time::{Duration, Instant};

const MARKER: &str = "report-ready";
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest answer body read (for the message).
const MAX_BODY: usize = 4096;

/// The final stage's last step. `failed_before`: actions of this apply that failed (then
/// readiness is not reported); `policy`: how tries are spaced (`Settings::onegate`).
pub fn report(ap: &mut Apply, plan: &Plan, state: &State, failed_before: usize, policy: &Backoff) {
    let Some(gate) = &plan.onegate else { return };
    let target = format!("{}/vm", gate.endpoint);
    if state.done(&plan.instance_id, MARKER) {
        return ap.unchanged(
            "onegate",
            &target,
            "READY=YES already reported for this instance",
        );
    }
    if failed_before > 0 {
        return ap.unchanged(
            "onegate",
            &target,
            format!("READY=YES not reported: {failed_before} action(s) failed"),
        );
    }
    if ap.dry_run {
        return ap.changed("onegate", &target, "would report READY=YES");
    }
    // Read with the context (ONEGATE_TOKEN or token.txt), never from the CD again.
    let Some(token) = &gate.token else {
        return ap.failed("onegate", &target, "no OneGate token in the context");
    };
    match put_ready(gate, token, policy) {
        Ok(detail) => {
            if let Err(e) = state.mark_done(&plan.instance_id, MARKER, &detail) {
                ap.failed("state", MARKER, format!("done marker: {e}"));
            }
            ap.changed("onegate", &target, detail);
        }
        Err(e) => ap.failed("onegate", &target, e),
    }
}

/// Sends `READY=YES`, retrying what may pass later; the detail of the success, or why not.
pub fn put_ready(gate: &OneGatePlan, token: &Secret, policy: &Backoff) -> Result<String, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    rt.block_on(async {
        let client = http::client(None).map_err(|e| e.to_string())?;
        let url = format!("{}/vm", gate.endpoint);
        let started = Instant::now();
        let tries = policy.tries;
        let sent = retry::run(policy, None, |attempt| {
            let (client, url) = (&client, &url);
            async move {
                match once(client, url, &gate.vmid, token).await {
                    Ok(status) if status.is_success() => Try::Done(format!(
                        "READY=YES reported (HTTP {}, try {attempt} of {tries})",
                        status.as_u16()
                    )),
                    Ok(status) if status.is_server_error() || status.as_u16() == 429 => {
                        Try::Again(format!("HTTP {status}"))
                    }
                    Ok(status) => Try::Fail(format!("OneGate refused READY=YES: HTTP {status}")),
                    Err(e) => Try::Again(e),
                }
            }
        })
        .await;
        sent.map_err(|e| match e {
            GaveUp::Failed(why) => why,
            GaveUp::Exhausted { last, tries } => format!(
                "gave up after {tries} tries in {:.1} s; last: {last}",
                started.elapsed().as_secs_f64()
            ),
        })
    })
}

async fn once(
    client: &http::HttpClient,
    url: &str,
    vmid: &str,
    token: &Secret,
) -> Result<hyper::StatusCode, String> {
    let mut secret = ::http::HeaderValue::from_str(token.expose())
        .map_err(|_| "the token is not a valid header")?;
    secret.set_sensitive(true);
    let req = hyper::Request::builder()
        .method(hyper::Method::PUT)
        .uri(url)
        .header("X-ONEGATE-TOKEN", secret)
        .header("X-ONEGATE-VMID", vmid)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(UploadBody::Bytes(Some(Bytes::from_static(b"READY=YES"))))
        .map_err(|e| format!("{url}: {e}"))?;
    let resp = tokio::time::timeout(ATTEMPT_TIMEOUT, client.request(req))
        .await
        .map_err(|_| format!("no answer within {} s", ATTEMPT_TIMEOUT.as_secs()))?
        .map_err(|e| connect_error(&e))?;
    let status = resp.status();
    // Drain (bounded) so the connection can be reused; the body itself is not shown.
    let _ = tokio::time::timeout(
        ATTEMPT_TIMEOUT,
        http_body_util::Limited::new(resp.into_body(), MAX_BODY).collect(),
    )
    .await;
    Ok(status)
}

fn connect_error(e: &hyper_util::client::legacy::Error) -> String {
    use std::error::Error;
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    msg
}
