//! When the boot stops waiting. `network-online.target` is held by the image's wait-online
//! service; vmctx configures its static links itself before `network-pre.target`, so that
//! service must not wait for them (networkd's would wait for its full timeout when it manages
//! no link at all), but must still wait for the DHCP links vmctx hands to the manager. And the
//! final stage (`vmctx.service`) is started only when it has work, so `vmctx status --wait`
//! returns once the local stage is done.

use super::ManagerFile;
use crate::context::{Context, Method, Network};
use crate::facts::{Links, Managers};
use serde::Serialize;

/// The arguments for networkd's wait-online, read by the package's drop-in for
/// `systemd-networkd-wait-online.service` (`packaging/systemd/vmctx-wait-online.conf`).
pub const NETWORKD_WAIT_ARGS: &str = "/run/vmctx/networkd-wait-online";
/// With this file the drop-in's condition skips networkd's wait-online: every link of the
/// context is vmctx's own, configured before networkd started, so there is nothing to wait for
/// (and the wait's own start costs seconds on a slow VM).
pub const NETWORKD_WAIT_SKIP: &str = "/run/vmctx/networkd-wait-online-skip";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WaitOnline {
    /// The service that holds `network-online.target`.
    pub unit: &'static str,
    /// Links it waits for: the DHCP ones vmctx hands to the manager.
    pub waits_for: Vec<String>,
    /// vmctx's own links, configured before the manager starts: not waited for.
    pub not_waited: Vec<String>,
    /// Nothing to wait for: the unit is skipped (networkd's, through the drop-in's condition).
    pub skipped: bool,
}

/// What holds `network-online.target` in this image once vmctx configured the context's
/// links, and the file that tells networkd's wait-online (none for the other managers: their
/// waits skip the links vmctx keeps them off, and wait for the DHCP ones vmctx gives them).
pub fn wait_online(
    net: &Network,
    links: &Links,
    m: &Managers,
) -> (Vec<WaitOnline>, Option<ManagerFile>) {
    let (mut dhcp, mut own) = (Vec::new(), Vec::new());
    if net.configure {
        for nic in &net.nics {
            let Some(link) = links.by_mac(nic.mac) else {
                continue;
            };
            match nic.method {
                Method::Dhcp => dhcp.push(link.name.clone()),
                Method::Static => own.push(link.name.clone()),
                Method::Skip => {}
            }
        }
    }
    let w = &m.wait_online;
    let skip_networkd = dhcp.is_empty() && !own.is_empty();
    let mut out = Vec::new();
    for (enabled, unit, skipped) in [
        (
            w.networkd,
            "systemd-networkd-wait-online.service",
            skip_networkd,
        ),
        (
            w.network_manager,
            "NetworkManager-wait-online.service",
            false,
        ),
        (w.ifupdown, "ifupdown-wait-online.service", false),
    ] {
        if enabled {
            out.push(WaitOnline {
                unit,
                waits_for: dhcp.clone(),
                not_waited: own.clone(),
                skipped,
            });
        }
    }
    if w.networkd && skip_networkd {
        let file = ManagerFile {
            path: NETWORKD_WAIT_SKIP.to_string(),
            purpose: format!("networkd-wait-online: skipped ({} vmctx's)", own.join(" ")),
            content: "# Written by vmctx: every link of the context is configured by vmctx; \
                      networkd's wait-online is skipped.\n"
                .to_string(),
            mode: 0o644,
        };
        return (out, Some(file));
    }
    // Listing every link of the context (none outside it) keeps networkd's wait from waiting
    // for "all links it manages" (none: vmctx's are unmanaged) until its timeout. vmctx's own
    // links are up and addressed already: any state from no-carrier on is enough; its DHCP
    // ones need their lease (routable).
    let file = (w.networkd && !dhcp.is_empty()).then(|| {
        let args: Vec<String> = own
            .iter()
            .map(|n| format!("--interface={n}:no-carrier"))
            .chain(dhcp.iter().map(|n| format!("--interface={n}:routable")))
            .collect();
        ManagerFile {
            path: NETWORKD_WAIT_ARGS.to_string(),
            purpose: format!("networkd-wait-online: {}", args.join(" ")),
            content: format!(
                "# Written by vmctx: wait-online waits for the context's links only.\n\
                 VMCTX_WAIT_ONLINE_ARGS=\"{}\"\n",
                args.join(" ")
            ),
            mode: 0o644,
        }
    });
    (out, file)
}

/// Why the final stage runs (empty: nothing for it to do, and `vmctx.service` is not started).
pub fn final_work(ctx: &Context, from_network: bool) -> Vec<&'static str> {
    let s = &ctx.scripts;
    [
        (from_network, "network source"),
        (s.start.is_some(), "start script"),
        (!s.init.is_empty(), "init scripts"),
        (
            s.user_data.is_some() || ctx.cloud_config.is_some(),
            "user-data",
        ),
        (ctx.update.is_some(), "update schedule"),
        (ctx.sync.is_some(), "sync"),
        (ctx.onegate.is_some(), "OneGate report"),
    ]
    .into_iter()
    .filter_map(|(yes, why)| yes.then_some(why))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::{parse_links, WaitOnline as Enabled};
    use crate::source::opennebula::ctx;

    fn managers(networkd: bool, network_manager: bool, ifupdown: bool) -> Managers {
        Managers {
            network_manager,
            networkd: true,
            ifupdown,
            wait_online: Enabled {
                networkd,
                network_manager,
                ifupdown,
            },
        }
    }

    const TWO: &str = "ETH0_MAC='02:00:0a:00:03:28'\nETH0_IP='10.0.3.40'\n\
                       ETH1_MAC='02:00:0a:00:03:29'\nETH1_METHOD='dhcp'\n";
    const LINKS: &str = "02:00:0a:00:03:28=ens3\n02:00:0a:00:03:29=ens4\n";

    #[test]
    fn networkd_waits_for_the_dhcp_link_not_vmctxs_own() {
        let c = ctx(TWO);
        let links = parse_links(LINKS).unwrap();
        let (w, file) = wait_online(&c.network, &links, &managers(true, false, false));
        assert_eq!(
            w,
            [WaitOnline {
                unit: "systemd-networkd-wait-online.service",
                waits_for: vec!["ens4".into()],
                not_waited: vec!["ens3".into()],
                skipped: false,
            }]
        );
        let file = file.unwrap();
        assert_eq!(file.path, NETWORKD_WAIT_ARGS);
        assert!(file.content.ends_with(
            "VMCTX_WAIT_ONLINE_ARGS=\"--interface=ens3:no-carrier --interface=ens4:routable\"\n"
        ));
    }

    #[test]
    fn static_only_networkd_is_skipped() {
        let c = ctx("ETH0_MAC='02:00:0a:00:03:28'\nETH0_IP='10.0.3.40'\n");
        let links = parse_links(LINKS).unwrap();
        let (w, file) = wait_online(&c.network, &links, &managers(true, false, false));
        assert!(w[0].waits_for.is_empty() && w[0].skipped);
        // ens4 is outside the context: not waited for either.
        let file = file.unwrap();
        assert_eq!(file.path, NETWORKD_WAIT_SKIP);
        assert_eq!(file.purpose, "networkd-wait-online: skipped (ens3 vmctx's)");
        // Other managers still run their wait (it ends once they are up).
        let (w, _) = wait_online(&c.network, &links, &managers(true, true, false));
        assert_eq!(
            w.iter().map(|w| w.skipped).collect::<Vec<_>>(),
            [true, false]
        );
    }

    #[test]
    fn network_manager_and_ifupdown_need_no_file() {
        let c = ctx(TWO);
        let links = parse_links(LINKS).unwrap();
        let (w, file) = wait_online(&c.network, &links, &managers(false, true, true));
        let units: Vec<&str> = w.iter().map(|w| w.unit).collect();
        assert_eq!(
            units,
            [
                "NetworkManager-wait-online.service",
                "ifupdown-wait-online.service"
            ]
        );
        assert!(w.iter().all(|w| w.waits_for == ["ens4"]));
        assert!(file.is_none());
    }

    #[test]
    fn nothing_to_decide_without_links_or_network() {
        let links = parse_links(LINKS).unwrap();
        let m = managers(true, false, false);
        // NETWORK=NO: the image's own configuration and wait stay as they are.
        let c = ctx("NETWORK='NO'\nETH0_MAC='02:00:0a:00:03:28'\nETH0_IP='10.0.3.40'\n");
        assert!(wait_online(&c.network, &links, &m).1.is_none());
        // No link of the context is here.
        let c = ctx("ETH0_MAC='02:00:0a:00:03:99'\nETH0_IP='10.0.3.40'\n");
        assert!(wait_online(&c.network, &links, &m).1.is_none());
        // No wait-online service enabled.
        let (w, file) = wait_online(&ctx(TWO).network, &links, &Managers::default());
        assert!(w.is_empty() && file.is_none());
    }

    #[test]
    fn final_stage_only_with_work() {
        assert!(final_work(&ctx("ETH0_MAC='02:00:0a:00:03:28'\n"), false).is_empty());
        assert_eq!(
            final_work(&ctx("ETH0_MAC='02:00:0a:00:03:28'\n"), true),
            ["network source"]
        );
        let c = ctx("START_SCRIPT='echo hi'\nREPORT_READY='YES'\nONEGATE_ENDPOINT='http://192.168.0.1:5030'\nONEGATE_TOKEN='t'\n");
        let why = final_work(&c, false);
        assert!(why.contains(&"start script"), "{why:?}");
    }
}
