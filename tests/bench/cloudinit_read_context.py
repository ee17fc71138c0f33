"""Read an OpenNebula context folder the way cloud-init's datasource does.

Usage: python3 cloudinit_read_context.py CONTEXT_DIR LINKS_FILE [--print]

Run by tests/bench/plan-vs-cloudinit.sh with PYTHONPATH pointing at an
unpacked Debian cloud-init package. It is the cloud-init side of the
benchmark: interpreter start, `import cloudinit.sources.DataSourceOpenNebula`,
then `read_context_disk_dir(dir, None, asuser=None)`, which parses
context.sh by running it through `bash -e` (asuser=None: no `sudo -u nobody`)
and builds the network config v2, metadata and public keys.

cloud-init finds the NICs by reading /sys/class/net through a Distro object;
this machine's NICs do not carry the fixture's MACs, so the MAC -> name map is
read from LINKS_FILE (lines `MAC=ifname`), the same input `vmctx plan
--links-file` gets. distro is None because that lookup is its only use in
read_context_disk_dir. This leaves out the Distro import and set-up that a
real boot does, so the figure is a lower bound for cloud-init.
"""

import sys

from cloudinit.sources import DataSourceOpenNebula as ds


def read_links(path):
    nics = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            mac, _, name = line.partition("=")
            nics[mac.strip().lower()] = name.strip()
    return nics


def main(argv):
    if len(argv) < 3:
        sys.stderr.write(__doc__)
        return 2
    context_dir, links_file = argv[1], argv[2]
    nics = read_links(links_file)
    ds.get_physical_nics_by_mac = lambda distro: dict(nics)

    results = ds.read_context_disk_dir(context_dir, None, asuser=None)

    netcfg = results.get("network-interfaces") or {}
    eth = netcfg.get("ethernets", {})
    addrs = [a for dev in eth.values() for a in dev.get("addresses", [])]
    if not any(a.startswith("10.0.1.10/") for a in addrs):
        sys.stderr.write("cloud-init result lacks 10.0.1.10: %r\n" % (netcfg,))
        return 1
    summary = "hostname=%s keys=%d nics=%s addrs=%s" % (
        results["metadata"].get("local-hostname"),
        len(results["metadata"].get("public-keys", [])),
        ",".join(sorted(eth)),
        ",".join(addrs),
    )
    if "--print" in argv[3:]:
        print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
