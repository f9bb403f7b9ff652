//! Network: links, addresses and default routes read from the kernel over
//! rtnetlink; driver and link speed from sysfs, where the kernel exposes them.

use std::net::IpAddr;

use futures::TryStreamExt;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage, State,
};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use netlink_packet_route::AddressFamily;
use rtnetlink::{Handle, RouteMessageBuilder};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{ProbeError, Root};

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Network {
    pub links: Vec<Link>,
    pub default_routes: Vec<DefaultRoute>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// Link type from the kernel (veth, dummy, bridge, ...); absent for plain NICs.
    pub kind: Option<String>,
    pub mac: Option<String>,
    /// Burned-in address, when the driver reports one that differs from `mac`.
    pub permanent_mac: Option<String>,
    pub mtu: Option<u32>,
    /// RFC 2863 operational state: up, down, lowerlayerdown, dormant, unknown, ...
    pub oper_state: String,
    /// Administratively up (IFF_UP).
    pub admin_up: bool,
    pub loopback: bool,
    pub driver: Option<String>,
    /// Bus address of the underlying device (PCI "0000:3b:00.0", "virtio2", ...).
    pub bus_id: Option<String>,
    pub speed_mbps: Option<u32>,
    /// "full" or "half", when the link negotiated one.
    pub duplex: Option<String>,
    pub addresses: Vec<Address>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq, Eq, PartialOrd, Ord)]
#[serde(deny_unknown_fields)]
pub struct Address {
    pub address: IpAddr,
    pub prefix_len: u8,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DefaultRoute {
    pub gateway: Option<IpAddr>,
    /// Name of the outgoing link.
    pub dev: Option<String>,
    pub metric: Option<u32>,
}

pub fn probe(root: &Root) -> Result<Network, ProbeError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|e| ProbeError::Netlink(format!("cannot start the I/O runtime: {e}")))?;
    rt.block_on(dump(root))
}

fn nl_err(what: &str) -> impl Fn(rtnetlink::Error) -> ProbeError + '_ {
    move |e| ProbeError::Netlink(format!("{what}: {e}"))
}

async fn dump(root: &Root) -> Result<Network, ProbeError> {
    let (conn, handle, _) = rtnetlink::new_connection()
        .map_err(|e| ProbeError::Netlink(format!("cannot open a NETLINK_ROUTE socket: {e}")))?;
    let conn = tokio::spawn(conn);
    let result = dump_with(root, &handle).await;
    conn.abort();
    result
}

async fn dump_with(root: &Root, handle: &Handle) -> Result<Network, ProbeError> {
    let link_msgs: Vec<LinkMessage> = handle
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(nl_err("dumping links"))?;
    let addr_msgs: Vec<AddressMessage> = handle
        .address()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(nl_err("dumping addresses"))?;
    let mut links: Vec<Link> = link_msgs.iter().map(|m| link_from(root, m)).collect();
    for m in &addr_msgs {
        if let (Some(link), Some(address)) = (
            links.iter_mut().find(|l| l.index == m.header.index),
            address_of(m),
        ) {
            link.addresses.push(Address {
                address,
                prefix_len: m.header.prefix_len,
            });
        }
    }
    for l in &mut links {
        l.addresses.sort();
        l.addresses.dedup();
    }
    links.sort_by_key(|l| l.index);

    let mut default_routes = Vec::new();
    let v4 = RouteMessageBuilder::<std::net::Ipv4Addr>::new().build();
    let v6 = RouteMessageBuilder::<std::net::Ipv6Addr>::new().build();
    for query in [v4, v6] {
        let routes: Vec<RouteMessage> = handle
            .route()
            .get(query)
            .execute()
            .try_collect()
            .await
            .map_err(nl_err("dumping routes"))?;
        default_routes.extend(
            routes
                .iter()
                .filter(|r| r.header.destination_prefix_length == 0 && is_main_table(r))
                .map(|r| default_route(r, &links)),
        );
    }
    Ok(Network {
        links,
        default_routes,
    })
}

fn is_main_table(r: &RouteMessage) -> bool {
    let table = r
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(r.header.table));
    table == u32::from(netlink_packet_route::route::RouteHeader::RT_TABLE_MAIN)
}

fn default_route(r: &RouteMessage, links: &[Link]) -> DefaultRoute {
    let mut out = DefaultRoute {
        gateway: None,
        dev: None,
        metric: None,
    };
    for a in &r.attributes {
        match a {
            RouteAttribute::Gateway(RouteAddress::Inet(ip)) => out.gateway = Some((*ip).into()),
            RouteAttribute::Gateway(RouteAddress::Inet6(ip)) => out.gateway = Some((*ip).into()),
            RouteAttribute::Oif(idx) => {
                out.dev = links
                    .iter()
                    .find(|l| l.index == *idx)
                    .map(|l| l.name.clone())
            }
            RouteAttribute::Priority(p) => out.metric = Some(*p),
            _ => {}
        }
    }
    out
}

fn address_of(m: &AddressMessage) -> Option<IpAddr> {
    // For IPv4, IFA_LOCAL is the interface's own address (IFA_ADDRESS is the
    // peer on point-to-point links); IPv6 only sends IFA_ADDRESS.
    let find = |want_local: bool| {
        m.attributes.iter().find_map(|a| match a {
            AddressAttribute::Local(ip) if want_local => Some(*ip),
            AddressAttribute::Address(ip) if !want_local => Some(*ip),
            _ => None,
        })
    };
    match m.header.family {
        AddressFamily::Inet => find(true).or_else(|| find(false)),
        _ => find(false),
    }
}

fn mac_string(bytes: &[u8]) -> Option<String> {
    (!bytes.is_empty()).then(|| {
        bytes
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    })
}

fn oper_state_name(s: &State) -> String {
    match s {
        State::Up => "up".into(),
        State::Down => "down".into(),
        State::Unknown => "unknown".into(),
        State::NotPresent => "notpresent".into(),
        State::LowerLayerDown => "lowerlayerdown".into(),
        State::Testing => "testing".into(),
        State::Dormant => "dormant".into(),
        other => format!("{other:?}").to_lowercase(),
    }
}

fn link_from(root: &Root, m: &LinkMessage) -> Link {
    let mut link = Link {
        index: m.header.index,
        name: String::new(),
        kind: None,
        mac: None,
        permanent_mac: None,
        mtu: None,
        oper_state: "unknown".into(),
        admin_up: m.header.flags.contains(LinkFlags::Up),
        loopback: m.header.flags.contains(LinkFlags::Loopback),
        driver: None,
        bus_id: None,
        speed_mbps: None,
        duplex: None,
        addresses: Vec::new(),
    };
    for a in &m.attributes {
        match a {
            LinkAttribute::IfName(n) => link.name = n.clone(),
            LinkAttribute::Address(b) => link.mac = mac_string(b),
            LinkAttribute::PermAddress(b) => link.permanent_mac = mac_string(b),
            LinkAttribute::Mtu(v) => link.mtu = Some(*v),
            LinkAttribute::OperState(s) => link.oper_state = oper_state_name(s),
            LinkAttribute::LinkInfo(infos) => {
                link.kind = infos.iter().find_map(|i| match i {
                    LinkInfo::Kind(InfoKind::Other(k)) => Some(k.clone()),
                    LinkInfo::Kind(k) => Some(k.to_string()),
                    _ => None,
                })
            }
            _ => {}
        }
    }
    if link.permanent_mac == link.mac {
        link.permanent_mac = None;
    }
    let sys = format!("/sys/class/net/{}", link.name);
    link.driver = root.link_name(format!("{sys}/device/driver"));
    link.bus_id = root.link_name(format!("{sys}/device"));
    link.duplex = root
        .value(format!("{sys}/duplex"))
        .filter(|d| d == "full" || d == "half");
    // The kernel reports -1 (or fails the read) when the speed is unknown.
    link.speed_mbps = root
        .parse::<i64>(format!("{sys}/speed"))
        .filter(|s| *s > 0)
        .and_then(|s| u32::try_from(s).ok());
    link
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs() {
        assert_eq!(
            mac_string(&[2, 0, 0, 0, 0, 0x42]).as_deref(),
            Some("02:00:00:00:00:42")
        );
        assert_eq!(mac_string(&[]), None);
    }

    /// The real kernel, in whatever namespace the test runs: loopback is
    /// always there with its fixed address.
    #[test]
    fn loopback_from_the_kernel() {
        let n = probe(&Root::host()).expect("rtnetlink dump");
        let lo = n
            .links
            .iter()
            .find(|l| l.loopback)
            .expect("a loopback link");
        assert_eq!(lo.name, "lo");
        assert_eq!(lo.mac.as_deref(), Some("00:00:00:00:00:00"));
        if lo.admin_up {
            assert!(lo
                .addresses
                .iter()
                .any(|a| a.address == IpAddr::from([127, 0, 0, 1])));
        }
    }
}
