//! `ipfs add` over kubo's RPC (`/api/v0/add`, one file in a multipart
//! body) with the options that fix its CID: CIDv1, raw leaves, 256 KiB
//! chunks (`xnode_chain::cid` computes the same CID without kubo).

use std::net::SocketAddr;

use serde::Deserialize;

use super::health::Rpc;

/// The query `ipfs add --cid-version=1 --raw-leaves --chunker=size-262144
/// --pin` sends.
pub const ADD_QUERY: &str = "cid-version=1&raw-leaves=true&chunker=size-262144&pin=true";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AddAnswer {
    hash: String,
}

/// Add `data` as one file; returns the CID kubo gives it.
pub async fn add(api: SocketAddr, data: Vec<u8>) -> Result<String, String> {
    let rpc = Rpc::new(api)?;
    // A boundary that cannot occur in the data: derived from its hash.
    let boundary = {
        use sha2::Digest;
        format!("xnode-{}", hex::encode(&sha2::Sha256::digest(&data)[..12]))
    };
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"data\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(&data);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let answer: AddAnswer = rpc
        .call_with(
            "add",
            ADD_QUERY,
            Some((format!("multipart/form-data; boundary={boundary}"), body)),
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(answer.hash)
}
