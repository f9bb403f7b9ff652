//! CIDs as `ipfs add --cid-version=1 --raw-leaves` makes them (kubo's
//! other defaults: `--chunker=size-262144`, balanced layout, at most 174
//! links a node), and the check a submitted CID must pass on chain.
//!
//! The agent computes the CID of what it fetched itself and compares it
//! with kubo's answer, so a kubo with other settings is caught before a
//! wrong CID goes on chain. The layout follows boxo's
//! `ipld/unixfs/importer/balanced`: raw leaves; each parent is a dag-pb
//! node whose links (name "", Tsize = the child's cumulative block size)
//! come before its UnixFS data `{Type: File, filesize, blocksizes}`.

use cid::Cid;
use sha2::{Digest, Sha256};

pub const CHUNK_SIZE: usize = 262_144;
pub const MAX_LINKS: usize = 174;

/// The shape of the DAG: kubo's `--chunker=size-N` and links a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub chunk_size: usize,
    pub max_links: usize,
}

impl Layout {
    /// `ipfs add --cid-version=1 --raw-leaves` with kubo's defaults.
    pub const KUBO: Layout = Layout {
        chunk_size: CHUNK_SIZE,
        max_links: MAX_LINKS,
    };

    /// The CID of `data` imported as a file in this layout (CIDv1, raw
    /// leaves, balanced).
    pub fn cid(&self, data: &[u8]) -> Cid {
        let mut chunks = Chunks {
            data,
            layout: *self,
        };
        // Empty or one chunk: the raw leaf is the file.
        let mut root = chunks.leaf();
        let mut depth = 1;
        while !chunks.done() {
            root = chunks.fill(Some(root), depth);
            depth += 1;
        }
        root.cid
    }
}
const RAW: u64 = 0x55;
const DAG_PB: u64 = 0x70;
const SHA2_256: u64 = 0x12;

fn cid_of(codec: u64, block: &[u8]) -> Cid {
    let digest = Sha256::digest(block);
    // A 32-byte digest always fits the 64-byte multihash.
    let mh = cid::multihash::Multihash::<64>::wrap(SHA2_256, &digest).unwrap_or_default();
    Cid::new_v1(codec, mh)
}

/// A built child: its CID, the file bytes under it, and the Tsize its
/// parent's link carries.
struct Built {
    cid: Cid,
    file_size: u64,
    tsize: u64,
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn field_bytes(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
    out.push(tag);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn parent(children: &[Built]) -> Built {
    // UnixFS Data: Type=File(2), filesize, blocksizes (proto2, unpacked).
    let file_size: u64 = children.iter().map(|c| c.file_size).sum();
    let mut unixfs = vec![0x08, 0x02, 0x18];
    varint(&mut unixfs, file_size);
    for c in children {
        unixfs.push(0x20);
        varint(&mut unixfs, c.file_size);
    }
    // PBNode: Links (field 2) first, then Data (field 1), as dag-pb's
    // canonical form orders them.
    let mut node = Vec::new();
    for c in children {
        let mut link = Vec::new();
        field_bytes(&mut link, 0x0a, &c.cid.to_bytes());
        field_bytes(&mut link, 0x12, b"");
        link.push(0x18);
        varint(&mut link, c.tsize);
        field_bytes(&mut node, 0x12, &link);
    }
    field_bytes(&mut node, 0x0a, &unixfs);
    let tsize = node.len() as u64 + children.iter().map(|c| c.tsize).sum::<u64>();
    Built {
        cid: cid_of(DAG_PB, &node),
        file_size,
        tsize,
    }
}

struct Chunks<'a> {
    data: &'a [u8],
    layout: Layout,
}

impl Chunks<'_> {
    fn done(&self) -> bool {
        self.data.is_empty()
    }

    fn leaf(&mut self) -> Built {
        let n = self.data.len().min(self.layout.chunk_size);
        let (chunk, rest) = self.data.split_at(n);
        self.data = rest;
        Built {
            cid: cid_of(RAW, chunk),
            file_size: n as u64,
            tsize: n as u64,
        }
    }

    /// A node of `depth` filled with as many children as there are data
    /// and links, the first child given.
    fn fill(&mut self, first: Option<Built>, depth: u32) -> Built {
        let mut children: Vec<Built> = first.into_iter().collect();
        while children.len() < self.layout.max_links && !self.done() {
            children.push(if depth == 1 {
                self.leaf()
            } else {
                self.fill(None, depth - 1)
            });
        }
        parent(&children)
    }
}

/// The CID `ipfs add --cid-version=1 --raw-leaves` gives `data`.
pub fn ipfs_add_cid(data: &[u8]) -> Cid {
    Layout::KUBO.cid(data)
}

/// A CID the chain records: CIDv1 in base32, raw or dag-pb, SHA-256.
pub fn check_submitted(s: &str) -> Result<Cid, String> {
    if s.len() > 128 {
        return Err("a CID is at most 128 characters".into());
    }
    let cid = Cid::try_from(s).map_err(|e| format!("'{s}' is not a CID: {e}"))?;
    if cid.version() != cid::Version::V1 || !s.starts_with('b') {
        return Err(format!(
            "'{s}' is not a base32 CIDv1 (`ipfs add --cid-version=1` gives one)"
        ));
    }
    if !matches!(cid.codec(), RAW | DAG_PB) {
        return Err(format!(
            "'{s}' has codec 0x{:x}; a file added to IPFS is raw (0x55) or dag-pb (0x70)",
            cid.codec()
        ));
    }
    if cid.hash().code() != SHA2_256 || cid.hash().size() != 32 {
        return Err(format!("'{s}' is not a SHA-256 CID"));
    }
    // One spelling per CID: the canonical lower-case base32.
    if cid.to_string() != s {
        return Err(format!("'{s}' is not in canonical form ({cid})"));
    }
    Ok(cid)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn small_files_are_their_raw_leaf() {
        // SHA-256 of nothing, as a raw CIDv1: what `ipfs add --cid-version=1
        // --raw-leaves` prints for an empty file.
        assert_eq!(
            ipfs_add_cid(b"").to_string(),
            "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
        );
        let one = vec![7u8; CHUNK_SIZE];
        let c = ipfs_add_cid(&one);
        assert_eq!(c.codec(), RAW);
        assert_eq!(c.hash().digest(), Sha256::digest(&one).as_slice());
    }

    #[test]
    fn larger_files_get_a_dag_pb_root_over_raw_leaves() {
        let data = vec![1u8; CHUNK_SIZE + 1];
        let c = ipfs_add_cid(&data);
        assert_eq!(c.codec(), DAG_PB);
        // The root by hand: two raw leaves of 262144 and 1 bytes.
        let l1 = cid_of(RAW, &data[..CHUNK_SIZE]);
        let l2 = cid_of(RAW, &data[CHUNK_SIZE..]);
        let mut node = Vec::new();
        for (l, n) in [(l1, CHUNK_SIZE as u64), (l2, 1)] {
            let mut link = vec![0x0a, 36];
            link.extend(l.to_bytes());
            link.extend([0x12, 0x00, 0x18]);
            varint(&mut link, n);
            node.push(0x12);
            node.push(link.len() as u8);
            node.extend(link);
        }
        let unixfs = [
            0x08, 0x02, 0x18, 0x81, 0x80, 0x10, 0x20, 0x80, 0x80, 0x10, 0x20, 0x01,
        ];
        node.push(0x0a);
        node.push(unixfs.len() as u8);
        node.extend(unixfs);
        assert_eq!(c, cid_of(DAG_PB, &node));
    }

    #[test]
    fn a_full_root_grows_a_level() {
        // 175 chunks: one more than a node holds, so depth 2.
        let data = vec![0u8; CHUNK_SIZE * MAX_LINKS + 1];
        let mut chunks = Chunks {
            data: &data,
            layout: Layout::KUBO,
        };
        let first = chunks.leaf();
        let full = chunks.fill(Some(first), 1);
        assert!(!chunks.done());
        let top = chunks.fill(Some(full), 2);
        assert!(chunks.done());
        assert_eq!(ipfs_add_cid(&data), top.cid);
        assert_eq!(top.file_size, data.len() as u64);
    }

    /// kubo's deterministic test data (test/cli/testutils/
    /// random_deterministic.go): the ChaCha20 keystream under key
    /// SHA-256(seed), nonce 0.
    fn kubo_random(seed: &str, len: usize) -> Vec<u8> {
        use chacha20::cipher::{KeyIvInit, StreamCipher};
        let key: [u8; 32] = Sha256::digest(seed.as_bytes()).into();
        let mut out = vec![0u8; len];
        chacha20::ChaCha20::new(&key.into(), &[0u8; 12].into()).apply_keystream(&mut out);
        out
    }

    #[test]
    fn kubo_published_cids_for_raw_leaf_cid_v1_files() {
        const MIB: usize = 1 << 20;
        // kubo test/cli/cid_profiles_test.go, profile unixfs-v1-2025
        // (CIDv1, raw leaves, 1 MiB chunks, 1024 links): one chunk and
        // one byte more.
        let wide = Layout {
            chunk_size: MIB,
            max_links: 1024,
        };
        let d = kubo_random("chunk-v1-seed", MIB + 1);
        assert_eq!(
            wide.cid(&d[..MIB]).to_string(),
            "bafkreiacndfy443ter6qr2tmbbdhadvxxheowwf75s6zehscklu6ezxmta"
        );
        assert_eq!(
            wide.cid(&d).to_string(),
            "bafybeigmix7t42i6jacydtquhet7srwvgpizfg7gjbq7627d35mjomtu64"
        );
        // kubo test/cli/add_test.go (6b55e6491), profile test-cid-v1
        // (CIDv1, raw leaves, 1 MiB chunks, 174 links: the default links
        // a node): a full root, and one chunk more, which adds a level.
        let narrow = Layout {
            chunk_size: MIB,
            max_links: MAX_LINKS,
        };
        let d = kubo_random("v1-seed", 175 * MIB);
        assert_eq!(
            narrow.cid(&d[..174 * MIB]).to_string(),
            "bafybeigwduxcf2aawppv3isnfeshnimkyplvw3hthxjhr2bdeje4tdaicu"
        );
        assert_eq!(
            narrow.cid(&d).to_string(),
            "bafybeidhd7lo2n2v7lta5yamob3xwhbxcczmmtmhquwhjesi35jntf7mpu"
        );
    }

    #[test]
    fn submitted_cids_must_be_canonical_v1_sha256_files() {
        let good = ipfs_add_cid(b"hello").to_string();
        assert!(check_submitted(&good).is_ok());
        let dag = ipfs_add_cid(&vec![0u8; CHUNK_SIZE + 5]).to_string();
        assert!(check_submitted(&dag).is_ok());
        for bad in [
            "",
            "hello",
            // CIDv0 (dag-pb, base58).
            "QmbWqxBEKC3P8tqsKc98xmWNzrzDtRLMiMPL8wBuTGsMnR",
            // The same CIDv1 upper-cased (base32upper is another multibase).
            &good.to_uppercase(),
            // dag-cbor.
            "bafyreigbtj4x7ip5legnfznufuopl4sg4knzc2cof6duas4b3q2fy6swua",
        ] {
            assert!(check_submitted(bad).is_err(), "{bad}");
        }
        assert!(check_submitted(&"b".repeat(200)).is_err());
    }
}
