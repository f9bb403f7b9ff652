//! Multiaddrs (github.com/multiformats/multiaddr), the text form, for the
//! protocols kubo's addresses use, and the libp2p peer IDs they carry.
//! Parsed here rather than with the `multiaddr` crate, which is not a direct
//! dependency.

use std::net::{Ipv4Addr, Ipv6Addr};

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Part {
    Ip4(Ipv4Addr),
    Ip6(Ipv6Addr),
    /// dns, dns4, dns6 or dnsaddr, and the name.
    Dns(&'static str, String),
    Tcp(u16),
    Udp(u16),
    P2p(String),
    Unix(String),
    /// A protocol without a value: quic-v1, ws, tls, ...
    Bare(&'static str),
    /// Any other protocol with a value (ipcidr, certhash, sni, ...).
    Valued(&'static str, String),
}

const BARE: &[&str] = &[
    "quic",
    "quic-v1",
    "webtransport",
    "webrtc",
    "webrtc-direct",
    "ws",
    "wss",
    "tls",
    "noise",
    "http",
    "https",
    "p2p-circuit",
    "utp",
    "udt",
];
const DNS: &[&str] = &["dns", "dns4", "dns6", "dnsaddr"];
const VALUED: &[&str] = &[
    "ipcidr",
    "ip6zone",
    "certhash",
    "sni",
    "http-path",
    "dccp",
    "sctp",
];

pub(super) fn parse(s: &str) -> Result<Vec<Part>, String> {
    let Some(rest) = s.strip_prefix('/') else {
        return Err(format!("`{s}` is not a multiaddr: it must start with /"));
    };
    let mut segments = rest.split('/');
    let mut parts = Vec::new();
    while let Some(name) = segments.next() {
        if name.is_empty() {
            return Err(format!("`{s}` has an empty component"));
        }
        if name == "unix" {
            // The path is the rest of the address.
            let path: Vec<&str> = segments.by_ref().collect();
            if path.is_empty() || path.iter().all(|p| p.is_empty()) {
                return Err(format!("`{s}`: /unix needs a path"));
            }
            parts.push(Part::Unix(format!("/{}", path.join("/"))));
            break;
        }
        if let Some(b) = BARE.iter().find(|b| **b == name) {
            parts.push(Part::Bare(b));
            continue;
        }
        let Some(value) = segments.next().filter(|v| !v.is_empty()) else {
            return Err(if known(name) {
                format!("`{s}`: /{name} needs a value")
            } else {
                format!("`{s}`: unknown protocol /{name}")
            });
        };
        let bad = |what: &str| format!("`{s}`: `{value}` is not {what}");
        parts.push(match name {
            "ip4" => Part::Ip4(value.parse().map_err(|_| bad("an IPv4 address"))?),
            "ip6" => Part::Ip6(value.parse().map_err(|_| bad("an IPv6 address"))?),
            "tcp" => Part::Tcp(value.parse().map_err(|_| bad("a port"))?),
            "udp" => Part::Udp(value.parse().map_err(|_| bad("a port"))?),
            "p2p" | "ipfs" => {
                peer_id::check(value).map_err(|m| format!("`{s}`: {m}"))?;
                Part::P2p(value.to_string())
            }
            _ => {
                if let Some(d) = DNS.iter().find(|d| **d == name) {
                    if !hostname(value) {
                        return Err(bad("a DNS name"));
                    }
                    Part::Dns(d, value.to_string())
                } else if let Some(v) = VALUED.iter().find(|v| **v == name) {
                    Part::Valued(v, value.to_string())
                } else {
                    return Err(format!("`{s}`: unknown protocol /{name}"));
                }
            }
        });
    }
    if parts.is_empty() {
        return Err(format!("`{s}` is empty"));
    }
    Ok(parts)
}

fn known(name: &str) -> bool {
    ["ip4", "ip6", "tcp", "udp", "p2p", "ipfs"].contains(&name)
        || DNS.contains(&name)
        || VALUED.contains(&name)
}

fn hostname(s: &str) -> bool {
    s.len() <= 253
        && s.trim_end_matches('.').split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// libp2p peer IDs (libp2p specs, peer-ids): a base58btc multihash
/// (`Qm…`, `12D3Koo…`) or a CIDv1 with the libp2p-key codec in multibase
/// (`bafz…` base32, `k51…` base36, `z…` base58btc).
mod peer_id {
    const BASE58: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    const BASE36: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    const BASE32: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    const LIBP2P_KEY: u64 = 0x72;

    pub(super) fn check(s: &str) -> Result<(), String> {
        multihash(s).map(drop)
    }

    /// The peer ID's multihash bytes.
    pub(super) fn multihash(s: &str) -> Result<Vec<u8>, String> {
        let bad = |why: &str| format!("`{s}` is not a peer ID: {why}");
        if s.starts_with("Qm") || s.starts_with('1') {
            let mh = base_n(s, BASE58).ok_or_else(|| bad("not base58"))?;
            check_multihash(&mh).map_err(|m| bad(&m))?;
            return Ok(mh);
        }
        let (prefix, rest) = s.split_at(s.chars().next().map_or(0, char::len_utf8));
        let cid = match prefix {
            "b" => base32(rest),
            "k" => base_n(rest, BASE36),
            "z" => base_n(rest, BASE58),
            _ => return Err(bad("neither a base58 multihash nor a CID")),
        }
        .ok_or_else(|| bad("bad multibase text"))?;
        let (version, rest) = varint(&cid).ok_or_else(|| bad("truncated CID"))?;
        let (codec, mh) = varint(rest).ok_or_else(|| bad("truncated CID"))?;
        if version != 1 || codec != LIBP2P_KEY {
            return Err(bad("not a CIDv1 with the libp2p-key codec"));
        }
        check_multihash(mh).map_err(|m| bad(&m))?;
        Ok(mh.to_vec())
    }

    /// sha2-256 (RSA and large keys) or identity (keys of 42 bytes or less).
    fn check_multihash(mh: &[u8]) -> Result<(), String> {
        let (code, rest) = varint(mh).ok_or("truncated multihash")?;
        let (len, digest) = varint(rest).ok_or("truncated multihash")?;
        if len != digest.len() as u64 {
            return Err("the multihash length does not match".into());
        }
        match (code, len) {
            (0x12, 32) => Ok(()),
            (0x00, 1..=42) => Ok(()),
            (0x12 | 0x00, _) => Err(format!("a digest of {len} bytes")),
            _ => Err(format!(
                "multihash code {code:#x} is not sha2-256 or identity"
            )),
        }
    }

    /// An unsigned LEB128 varint and what follows it.
    fn varint(b: &[u8]) -> Option<(u64, &[u8])> {
        let mut v: u64 = 0;
        for (i, byte) in b.iter().enumerate().take(9) {
            v |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Some((v, &b[i + 1..]));
            }
        }
        None
    }

    /// Big-number base conversion (base58btc, base36): leading zero digits
    /// are leading zero bytes.
    fn base_n(s: &str, alphabet: &[u8]) -> Option<Vec<u8>> {
        if s.is_empty() {
            return None;
        }
        let base = alphabet.len() as u32;
        let mut bytes: Vec<u8> = Vec::new(); // little-endian
        for c in s.bytes() {
            let mut carry = alphabet.iter().position(|a| *a == c)? as u32;
            for b in bytes.iter_mut() {
                carry += u32::from(*b) * base;
                *b = (carry & 0xff) as u8;
                carry >>= 8;
            }
            while carry > 0 {
                bytes.push((carry & 0xff) as u8);
                carry >>= 8;
            }
        }
        let zeros = s.bytes().take_while(|c| *c == alphabet[0]).count();
        bytes.extend(std::iter::repeat_n(0, zeros));
        bytes.reverse();
        Some(bytes)
    }

    /// RFC 4648 base32, lower case, no padding.
    fn base32(s: &str) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        let (mut acc, mut bits) = (0u32, 0u32);
        for c in s.bytes() {
            acc = (acc << 5) | BASE32.iter().position(|a| *a == c)? as u32;
            bits += 5;
            if bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
                acc &= (1 << bits) - 1;
            }
        }
        (!out.is_empty()).then_some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_id_forms_decode_to_the_same_multihash() {
        // The libp2p peer-ids spec's example, base58 and CIDv1 base32.
        assert_eq!(
            peer_id::multihash("QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N").unwrap(),
            peer_id::multihash("bafzbeie5745rpv2m6tjyuugywy4d5ewrqgqqhfnf445he3omzpjbx5xqxe")
                .unwrap()
        );
        let ed =
            peer_id::multihash("12D3KooWGU72UzYkzVAiTyNLugX72zoDPTGkRegoKcTfB8oWxSuu").unwrap();
        // identity multihash of a 36-byte protobuf ed25519 public key
        assert_eq!(&ed[..6], &[0x00, 0x24, 0x08, 0x01, 0x12, 0x20]);
        assert_eq!(
            ed,
            peer_id::multihash("k51qzi5uqu5din94tiyotk2qhc88xs2ktjswebuvodsqiaw8zfts6slhtk3m94")
                .unwrap()
        );
        assert_eq!(
            ed,
            peer_id::multihash("bafzaajaiaejcaywrcimx2tzmhl4r4zfxgsm2wk5yevnzsbsg4yb35gvqe5ugoc3i")
                .unwrap()
        );
    }
}
