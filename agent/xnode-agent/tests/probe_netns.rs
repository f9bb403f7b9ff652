//! The network section against the real kernel: a namespace made here with
//! links, MACs, MTUs, addresses and a default route of known values, probed
//! from inside, must come back exactly as configured.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::{json, missing, run_ok, Netns};
use serde_json::{json, Value};

fn link<'a>(net: &'a Value, name: &str) -> &'a Value {
    net["links"]
        .as_array()
        .and_then(|l| l.iter().find(|l| l["name"] == name))
        .unwrap_or_else(|| panic!("link {name} missing from {net:#}"))
}

fn addrs(l: &Value) -> Vec<String> {
    l["addresses"]
        .as_array()
        .expect("addresses")
        .iter()
        .map(|a| {
            format!(
                "{}/{}",
                a["address"].as_str().expect("address"),
                a["prefix_len"]
            )
        })
        .collect()
}

#[test]
fn probe_reports_exactly_the_namespace_it_runs_in() {
    if !common::is_root() || !common::have("ip") {
        missing("root and iproute2 to create a network namespace");
        return;
    }
    let ns = Netns(format!("xnode-probe-{}", std::process::id()));
    if !Command::new("ip")
        .args(["netns", "add", &ns.0])
        .status()
        .is_ok_and(|s| s.success())
    {
        missing("permission to create network namespaces (ip netns add)");
        return;
    }
    // A standalone link: dummy where the kernel has it, else a port-less bridge.
    let standalone_kind = ["dummy", "bridge"]
        .into_iter()
        .find(|kind| {
            Command::new("ip")
                .args([
                    "-n",
                    &ns.0,
                    "link",
                    "add",
                    "xlink0",
                    "address",
                    "02:00:00:00:00:42",
                ])
                .args(["mtu", "9000", "type", kind])
                .status()
                .is_ok_and(|s| s.success())
        })
        .expect("neither dummy nor bridge links can be created");
    if standalone_kind != "dummy" {
        eprintln!(
            "note: this kernel has no dummy driver; the standalone link is a {standalone_kind}"
        );
    }
    ns.ip("link add veth-a address 02:00:00:00:00:a1 mtu 1400 type veth peer name veth-b address 02:00:00:00:00:b1 mtu 1400");
    // No kernel-generated IPv6 link-local addresses: the test owns every address.
    for l in ["xlink0", "veth-a", "veth-b"] {
        ns.ip(&format!("link set {l} addrgenmode none"));
    }
    ns.ip("addr add 198.51.100.10/24 dev xlink0");
    ns.ip("addr add 2001:db8:77::10/64 dev xlink0 nodad");
    ns.ip("addr add 203.0.113.1/30 dev veth-a");
    for l in ["lo", "xlink0", "veth-a", "veth-b"] {
        ns.ip(&format!("link set {l} up"));
    }
    ns.ip("route add default via 198.51.100.1 dev xlink0");

    let bin = env!("CARGO_BIN_EXE_xnode-agent");
    let out = run_ok(Command::new("ip").args([
        "netns", "exec", &ns.0, bin, "probe", "--json", "--only", "network",
    ]));
    let doc = json(&out);
    assert_eq!(doc["schema"], "xnode.inventory/v1");
    assert!(
        doc.get("cpu").is_none(),
        "--only network must leave other sections out"
    );
    let net = &doc["network"]["ok"];

    let mut names: Vec<&str> = net["links"]
        .as_array()
        .expect("links")
        .iter()
        .map(|l| l["name"].as_str().expect("name"))
        .collect();
    names.sort();
    assert_eq!(names, ["lo", "veth-a", "veth-b", "xlink0"]);

    let lo = link(net, "lo");
    assert_eq!(lo["loopback"], true);
    assert_eq!(addrs(lo), ["127.0.0.1/8", "::1/128"]);

    let x = link(net, "xlink0");
    assert_eq!(x["kind"], standalone_kind);
    assert_eq!(x["mac"], "02:00:00:00:00:42");
    assert_eq!(x["mtu"], 9000);
    assert_eq!(x["admin_up"], true);
    assert_eq!(addrs(x), ["198.51.100.10/24", "2001:db8:77::10/64"]);

    for (name, mac, want) in [
        ("veth-a", "02:00:00:00:00:a1", vec!["203.0.113.1/30"]),
        ("veth-b", "02:00:00:00:00:b1", vec![]),
    ] {
        let v = link(net, name);
        assert_eq!(v["kind"], "veth");
        assert_eq!(v["mac"], mac);
        assert_eq!(v["mtu"], 1400);
        assert_eq!(v["oper_state"], "up", "both ends of an up veth pair are up");
        assert_eq!(
            v["driver"],
            Value::Null,
            "virtual links have no device driver"
        );
        assert_eq!(addrs(v), want);
    }

    assert_eq!(
        net["default_routes"],
        json!([{ "gateway": "198.51.100.1", "dev": "xlink0", "metric": null }])
    );
}
