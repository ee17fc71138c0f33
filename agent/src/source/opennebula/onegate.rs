//! `REPORT_READY`, `ONEGATE_ENDPOINT`, `ONEGATE_TOKEN` / `token.txt` and `VMID`: what vmctx
//! needs to tell OneGate that the VM is ready (acted on by `crate::apply::onegate`).

use super::Reader;
use crate::context::{OneGate, Secret};

/// The OneGate settings when `REPORT_READY=YES`; a report that cannot be sent (no endpoint,
/// VMID or token) is a warning, an endpoint that is not an http(s) URL an error.
pub(super) fn onegate(r: &mut Reader, files: &[String]) -> Option<OneGate> {
    if !r.flag("REPORT_READY", false) {
        return None;
    }
    let Some(endpoint) = r.get("ONEGATE_ENDPOINT") else {
        r.warn("REPORT_READY=YES but ONEGATE_ENDPOINT is not set: readiness is not reported");
        return None;
    };
    let endpoint = endpoint.trim_end_matches('/').to_string();
    let host = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"));
    if !host.is_some_and(|h| !h.is_empty() && !h.contains(char::is_whitespace)) {
        r.error("ONEGATE_ENDPOINT", "expected an http:// or https:// URL");
        return None;
    }
    let Some(vmid) = r.get("VMID") else {
        r.warn("REPORT_READY=YES but VMID is not set: readiness is not reported");
        return None;
    };
    let token = r.get("ONEGATE_TOKEN").map(Secret::new);
    let token_file = files.iter().any(|f| f == "token.txt");
    if token.is_none() && !token_file {
        r.warn(
            "REPORT_READY=YES but there is no OneGate token (TOKEN=YES puts token.txt on the \
             context CD): readiness is not reported",
        );
        return None;
    }
    Some(OneGate {
        endpoint,
        vmid: vmid.to_string(),
        token,
        token_file,
    })
}

#[cfg(test)]
mod tests {
    use crate::source::context_sh::parse;
    use crate::source::opennebula::to_context;

    fn ctx(text: &str, files: &[&str]) -> crate::context::Context {
        let files: Vec<String> = files.iter().map(|s| s.to_string()).collect();
        to_context(
            &parse(text.as_bytes()).vars,
            &files,
            &"dir:test".parse().unwrap(),
        )
    }

    #[test]
    fn report_ready_with_token_file() {
        let c = ctx(
            "VMID='7'\nREPORT_READY='YES'\nONEGATE_ENDPOINT='http://192.168.0.1:5030/'\n",
            &["token.txt"],
        );
        let g = c.onegate.clone().expect("onegate");
        assert_eq!(g.endpoint, "http://192.168.0.1:5030");
        assert_eq!(g.vmid, "7");
        assert!(g.token_file && g.token.is_none());
        assert!(c.errors.is_empty() && c.warnings.is_empty(), "{c:?}");
    }

    #[test]
    fn the_token_variable_is_a_secret() {
        let c = ctx(
            "VMID='7'\nREPORT_READY='yes'\nONEGATE_ENDPOINT='https://gate.example:5030'\nONEGATE_TOKEN='s3cr3t-token'\n",
            &[],
        );
        assert!(c.onegate.as_ref().unwrap().token.is_some());
        let shown = serde_json::to_string(&c).unwrap();
        assert!(!shown.contains("s3cr3t-token"), "{shown}");
        assert!(!format!("{:?}", c.onegate).contains("s3cr3t-token"));
    }

    #[test]
    fn what_is_missing_is_said() {
        assert!(
            ctx("VMID='7'\nONEGATE_ENDPOINT='http://a:1'\n", &["token.txt"])
                .onegate
                .is_none()
        );
        let c = ctx("VMID='7'\nREPORT_READY='YES'\n", &["token.txt"]);
        assert!(c.onegate.is_none() && c.warnings.iter().any(|w| w.contains("ONEGATE_ENDPOINT")));
        let c = ctx(
            "VMID='7'\nREPORT_READY='YES'\nONEGATE_ENDPOINT='http://a:1'\n",
            &[],
        );
        assert!(c.onegate.is_none() && c.warnings.iter().any(|w| w.contains("token")));
        let c = ctx(
            "VMID='7'\nREPORT_READY='YES'\nONEGATE_ENDPOINT='192.168.0.1:5030'\n",
            &["token.txt"],
        );
        assert!(
            c.errors[0].starts_with("ONEGATE_ENDPOINT:"),
            "{:?}",
            c.errors
        );
        let c = ctx("REPORT_READY='maybe'\n", &[]);
        assert!(c.errors[0].starts_with("REPORT_READY:"), "{:?}", c.errors);
    }
}
