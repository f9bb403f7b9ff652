//! `xnode-agent chain`: the Xnode chain through CometBFT's RPC
//! (tendermint-rpc): queries of the application's state, and signed
//! transactions: register and re-attest, stake, submit CIDs, and the
//! authority's and activators' messages (docs/chain.md).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use ed25519_dalek::SigningKey;
use tendermint_rpc::Client as _;
use xnode_chain::tx::{Body, Msg, Tx};
use xnode_chain::Params;

#[derive(Debug, Args)]
pub struct RpcArgs {
    /// CometBFT's RPC.
    #[arg(
        long,
        env = "XNODE_CHAIN_RPC",
        default_value = "http://127.0.0.1:26657"
    )]
    rpc: String,
    /// Seconds to wait for each RPC answer.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct SendArgs {
    #[command(flatten)]
    rpc: RpcArgs,
    /// The signing key: a 32-byte Ed25519 seed (the node's key by default).
    #[arg(
        long,
        env = "XNODE_CHAIN_KEY",
        default_value = "/var/lib/xnode/node.key"
    )]
    key: PathBuf,
    /// Wait until the transaction is in a block (broadcast_tx_commit), and
    /// report the block's verdict, not only the mempool's.
    #[arg(long)]
    wait: bool,
}

#[derive(Debug, Subcommand)]
pub enum ChainCommand {
    /// The chain at its latest height: chain id, height, app hash and version, nodes.
    Status(RpcArgs),
    /// Any application query path; prints its JSON (paths: /app /params
    /// /beacon[/H] /account/ADDR /node/ID /nodes /activation/EK /validators
    /// /sources /assignment[/H] /records/H[/NODE]).
    Query {
        path: String,
        #[command(flatten)]
        rpc: RpcArgs,
    },
    /// The latest block hash the chain accepts as an attestation beacon:
    /// `xnode-agent attest --beacon HASH`, then `chain attest --beacon-height HEIGHT`.
    Beacon(RpcArgs),
    /// The address (hex public key) of a signing key.
    Address {
        #[arg(
            long,
            env = "XNODE_CHAIN_KEY",
            default_value = "/var/lib/xnode/node.key"
        )]
        key: PathBuf,
    },
    /// Register this node, or re-attest it, with an envelope bound to a beacon.
    Attest {
        /// The envelope from `xnode-agent attest --beacon HASH`.
        #[arg(long)]
        envelope: PathBuf,
        /// The height whose block hash the envelope is bound to.
        #[arg(long)]
        beacon_height: u64,
        /// This node's CometBFT consensus key (hex Ed25519), to validate.
        #[arg(long)]
        validator_key: Option<String>,
        #[command(flatten)]
        send: SendArgs,
    },
    /// Send tokens.
    Transfer {
        #[arg(long)]
        to: String,
        #[arg(long)]
        amount: u64,
        #[command(flatten)]
        send: SendArgs,
    },
    /// Bond tokens as this node's stake.
    Stake {
        amount: u64,
        #[command(flatten)]
        send: SendArgs,
    },
    /// Unbond stake (returned after the chain's unbonding period).
    Unstake {
        amount: u64,
        #[command(flatten)]
        send: SendArgs,
    },
    /// Submit the CID of what this node fetched for its assignment at HEIGHT.
    SubmitCid {
        #[arg(long)]
        height: u64,
        #[arg(long)]
        source: String,
        #[arg(long)]
        cid: String,
        #[command(flatten)]
        send: SendArgs,
    },
    /// Activator: record an (EK, AK) pair proven by `xnode-agent credential accept`.
    Activate {
        /// The activations file `credential accept --registry` wrote; every
        /// pair in it not yet on chain is sent.
        #[arg(long)]
        registry: PathBuf,
        #[command(flatten)]
        send: SendArgs,
    },
    /// Seed data: at each block, fetch this node's assigned source, add
    /// it to IPFS (kubo) as `ipfs add --cid-version=1 --raw-leaves` would,
    /// and submit its CID for that height.
    Seed {
        /// kubo's RPC API (IP:PORT).
        #[arg(long, default_value = "127.0.0.1:5001")]
        ipfs_api: std::net::SocketAddr,
        /// One round, for the latest height, then exit.
        #[arg(long)]
        once: bool,
        /// The most bytes taken from a source in one round.
        #[arg(long, default_value_t = 64 << 20)]
        max_bytes: u64,
        /// Seconds a fetch may take at most; it also ends when the next
        /// block is made. What arrived by then is the round's data.
        #[arg(long, default_value_t = 5)]
        fetch_secs: u64,
        #[command(flatten)]
        send: SendArgs,
    },
    /// Authority: add a data source.
    AddSource {
        id: String,
        url: String,
        #[command(flatten)]
        send: SendArgs,
    },
    /// Authority: schedule a named upgrade at a height.
    ScheduleUpgrade {
        name: String,
        height: u64,
        #[command(flatten)]
        send: SendArgs,
    },
}

pub fn run(cmd: ChainCommand) -> Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(dispatch(cmd))
}

async fn dispatch(cmd: ChainCommand) -> Result<ExitCode> {
    match cmd {
        ChainCommand::Status(rpc) => status(&rpc).await,
        ChainCommand::Query { path, rpc } => {
            let v = Chain::connect(&rpc)?.query(&path).await?;
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(ExitCode::SUCCESS)
        }
        ChainCommand::Beacon(rpc) => {
            let v = Chain::connect(&rpc)?.query("/beacon").await?;
            if rpc.json {
                println!("{v}");
            } else {
                println!(
                    "height {}\nhash   {}",
                    v["height"],
                    v["hash"].as_str().unwrap_or("")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ChainCommand::Address { key } => {
            println!(
                "{}",
                hex::encode(load_key(&key)?.verifying_key().as_bytes())
            );
            Ok(ExitCode::SUCCESS)
        }
        ChainCommand::Attest {
            envelope,
            beacon_height,
            validator_key,
            send: s,
        } => {
            let bytes = std::fs::read(&envelope)
                .with_context(|| format!("cannot read the envelope {}", envelope.display()))?;
            let msg = Msg::Attest {
                envelope: xnode_chain::tx::encode_envelope(&bytes),
                beacon_height,
                validator_key,
            };
            send(&s, msg).await
        }
        ChainCommand::Transfer {
            to,
            amount,
            send: s,
        } => send(&s, Msg::Transfer { to, amount }).await,
        ChainCommand::Stake { amount, send: s } => send(&s, Msg::Stake { amount }).await,
        ChainCommand::Unstake { amount, send: s } => send(&s, Msg::Unstake { amount }).await,
        ChainCommand::SubmitCid {
            height,
            source,
            cid,
            send: s,
        } => {
            send(
                &s,
                Msg::SubmitCid {
                    height,
                    source,
                    cid,
                },
            )
            .await
        }
        ChainCommand::Activate { registry, send: s } => activate(&registry, &s).await,
        ChainCommand::Seed {
            ipfs_api,
            once,
            max_bytes,
            fetch_secs,
            send: s,
        } => {
            let seed = Seeder {
                ipfs_api,
                max_bytes,
                fetch: Duration::from_secs(fetch_secs),
            };
            seed.run(&s, once).await
        }
        ChainCommand::AddSource { id, url, send: s } => send(&s, Msg::AddSource { id, url }).await,
        ChainCommand::ScheduleUpgrade {
            name,
            height,
            send: s,
        } => send(&s, Msg::ScheduleUpgrade { name, height }).await,
    }
}

/// The chain's application behind CometBFT's RPC.
struct Chain {
    client: tendermint_rpc::HttpClient,
    url: String,
}

/// A query path with nothing there (the application's NOT_FOUND).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct NotFound(String);

impl Chain {
    fn connect(rpc: &RpcArgs) -> Result<Chain> {
        let client = supervisor::cometbft::rpc_client(&rpc.rpc, Duration::from_secs(rpc.timeout))
            .map_err(|e| anyhow!(e))?;
        Ok(Chain {
            client,
            url: rpc.rpc.clone(),
        })
    }

    async fn query(&self, path: &str) -> Result<serde_json::Value> {
        let r = self
            .client
            .abci_query(Some(path.to_string()), Vec::<u8>::new(), None, false)
            .await
            .with_context(|| format!("query {path} at {}", self.url))?;
        let code = r.code.value();
        if code == xnode_chain::codes::NOT_FOUND {
            return Err(NotFound(r.log).into());
        }
        if code != 0 {
            bail!("query {path}: code {code}: {}", r.log);
        }
        serde_json::from_slice(&r.value).with_context(|| format!("query {path}: not JSON"))
    }
}

async fn status(rpc: &RpcArgs) -> Result<ExitCode> {
    let chain = Chain::connect(rpc)?;
    let app = chain.query("/app").await?;
    if rpc.json {
        println!("{app}");
        return Ok(ExitCode::SUCCESS);
    }
    println!("chain       {}", app["chain_id"].as_str().unwrap_or("?"));
    println!("height      {}", app["height"]);
    println!("app hash    {}", app["app_hash"].as_str().unwrap_or("?"));
    println!("app version {}", app["app_version"]);
    println!("nodes       {}", app["nodes"]);
    println!("CID records {}", app["records"]);
    if let Some(p) = app["pending_upgrades"]
        .as_object()
        .filter(|p| !p.is_empty())
    {
        for (h, name) in p {
            println!("upgrade     {} at height {h}", name.as_str().unwrap_or("?"));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A 32-byte Ed25519 seed, as `xnode-agent attest` keeps the node key.
fn load_key(path: &Path) -> Result<SigningKey> {
    let bytes =
        std::fs::read(path).with_context(|| format!("cannot read the key {}", path.display()))?;
    let seed: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
        anyhow!(
            "{}: expected a 32-byte Ed25519 seed (the node key), found {} bytes",
            path.display(),
            bytes.len()
        )
    })?;
    Ok(SigningKey::from_bytes(&seed))
}

async fn activate(registry: &Path, s: &SendArgs) -> Result<ExitCode> {
    let reg: xnode_verify::credential::Registry = serde_json::from_slice(
        &std::fs::read(registry).with_context(|| format!("cannot read {}", registry.display()))?,
    )
    .with_context(|| format!("{}: not an activations registry", registry.display()))?;
    let chain = Chain::connect(&s.rpc)?;
    let mut sent = 0;
    for a in reg.activations {
        let on_chain = match chain
            .query(&format!("/activation/{}", a.ek_public_sha256))
            .await
        {
            Ok(v) => v["ak_name"] == a.ak_name.as_str(),
            Err(e) if e.is::<NotFound>() => false,
            Err(e) => return Err(e),
        };
        if on_chain {
            println!(
                "EK {}…: already on chain",
                &a.ek_public_sha256[..16.min(a.ek_public_sha256.len())]
            );
            continue;
        }
        send(
            s,
            Msg::Activate {
                ek_public_sha256: a.ek_public_sha256,
                ak_name: a.ak_name,
            },
        )
        .await?;
        sent += 1;
    }
    println!("{sent} activation(s) sent");
    Ok(ExitCode::SUCCESS)
}

/// Sign `msg` with the next nonce and the chain's fee, and broadcast it.
async fn send(s: &SendArgs, msg: Msg) -> Result<ExitCode> {
    let key = load_key(&s.key)?;
    let chain = Chain::connect(&s.rpc)?;
    let sender = hex::encode(key.verifying_key().as_bytes());
    let app = chain.query("/app").await?;
    let chain_id = app["chain_id"]
        .as_str()
        .ok_or_else(|| anyhow!("/app has no chain_id"))?
        .to_string();
    let params: Params = serde_json::from_value(chain.query("/params").await?)
        .context("/params: not this agent's parameter format")?;
    let nonce = match chain.query(&format!("/account/{sender}")).await {
        // The mempool's view: transactions this account sent that are not
        // in a block yet count.
        Ok(a) => a["pending_nonce"]
            .as_u64()
            .or_else(|| a["nonce"].as_u64())
            .unwrap_or(0),
        Err(e) if e.is::<NotFound>() => 0,
        Err(e) => return Err(e),
    };
    let kind = msg.kind();
    let mut body = Body {
        chain_id,
        sender,
        nonce,
        fee: 0,
        msg,
    };
    // The fee depends on the size, which depends (by its digits) on the fee.
    let unsigned = Tx::sign(body.clone(), &key).to_bytes().len();
    body.fee = params.fee_for(unsigned + 20);
    let tx = Tx::sign(body, &key);
    let bytes = tx.to_bytes();
    if s.wait {
        let r = chain
            .client
            .broadcast_tx_commit(bytes)
            .await
            .with_context(|| format!("broadcast_tx_commit at {}", chain.url))?;
        let (c, d) = (r.check_tx.code.value(), r.tx_result.code.value());
        if c != 0 {
            bail!(
                "{kind} refused by the mempool (code {c}): {}",
                r.check_tx.log
            );
        }
        if d != 0 {
            bail!(
                "{kind} rejected in block {} (code {d}): {}",
                r.height,
                r.tx_result.log
            );
        }
        report(
            s,
            kind,
            &r.hash.to_string(),
            Some(r.height.value()),
            tx.body.nonce,
            tx.body.fee,
        );
    } else {
        let r = chain
            .client
            .broadcast_tx_sync(bytes)
            .await
            .with_context(|| format!("broadcast_tx_sync at {}", chain.url))?;
        if r.code.value() != 0 {
            bail!(
                "{kind} refused by the mempool (code {}): {}",
                r.code.value(),
                r.log
            );
        }
        report(
            s,
            kind,
            &r.hash.to_string(),
            None,
            tx.body.nonce,
            tx.body.fee,
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn report(s: &SendArgs, kind: &str, hash: &str, height: Option<u64>, nonce: u64, fee: u64) {
    if s.rpc.json {
        println!(
            "{}",
            serde_json::json!({"kind": kind, "hash": hash, "height": height, "nonce": nonce, "fee": fee})
        );
    } else {
        match height {
            Some(h) => println!("{kind}: in block {h} (tx {hash}, nonce {nonce}, fee {fee})"),
            None => println!("{kind}: in the mempool (tx {hash}, nonce {nonce}, fee {fee}); --wait waits for the block"),
        }
    }
}

/// One node's seeding: its assignment each block, fetched, added to kubo
/// and submitted.
struct Seeder {
    ipfs_api: std::net::SocketAddr,
    max_bytes: u64,
    fetch: Duration,
}

impl Seeder {
    async fn run(&self, s: &SendArgs, once: bool) -> Result<ExitCode> {
        let me = hex::encode(load_key(&s.key)?.verifying_key().as_bytes());
        let chain = Chain::connect(&s.rpc)?;
        let mut done = 0;
        loop {
            let height = match chain.query("/app").await {
                Ok(app) => app["height"].as_u64().unwrap_or(0),
                Err(e) if once => return Err(e),
                // CometBFT restarting: wait for it rather than exit.
                Err(e) => {
                    eprintln!("seed: {e:#}; trying again");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    continue;
                }
            };
            if height > done {
                let round = self.round(&chain, s, &me, height).await;
                match (&round, once) {
                    (Ok(what), _) => eprintln!("seed: height {height}: {what}"),
                    (Err(e), false) => eprintln!("seed: height {height}: {e:#}"),
                    (Err(_), true) => {}
                }
                if once {
                    return round.map(|_| ExitCode::SUCCESS);
                }
                done = height;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn round(&self, chain: &Chain, s: &SendArgs, me: &str, height: u64) -> Result<String> {
        let a = chain.query(&format!("/assignment/{height}")).await?;
        let Some(source) = a["assignment"][me].as_str().map(str::to_string) else {
            return Ok("no source assigned to this node".into());
        };
        let sources = chain.query("/sources").await?;
        let url = sources
            .as_array()
            .and_then(|l| l.iter().find(|x| x["id"] == source.as_str()))
            .and_then(|x| x["url"].as_str())
            .ok_or_else(|| anyhow!("source '{source}' is not in the registry"))?
            .to_string();
        let data = self
            .fetch(chain, height, &url)
            .await
            .with_context(|| format!("source '{source}' ({url})"))?;
        let ours = xnode_chain::cid::ipfs_add_cid(&data).to_string();
        let kubo = supervisor::kubo::add::add(self.ipfs_api, data.clone())
            .await
            .map_err(|e| anyhow!("ipfs add at {}: {e}", self.ipfs_api))?;
        if kubo != ours {
            bail!(
                "kubo gave {kubo} for {} bytes of '{source}', but `ipfs add --cid-version=1 \
                 --raw-leaves` gives {ours}: kubo is adding with other settings; nothing submitted",
                data.len()
            );
        }
        send(
            s,
            Msg::SubmitCid {
                height,
                source: source.clone(),
                cid: ours.clone(),
            },
        )
        .await?;
        Ok(format!("'{source}': {} bytes, {ours}", data.len()))
    }

    /// GET `url` until the chain moves past `height` (the next block), the
    /// fetch time ends or `max_bytes` arrived, whichever is first.
    async fn fetch(&self, chain: &Chain, height: u64, url: &str) -> Result<Vec<u8>> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("xnode-agent/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(self.fetch)
            .build()
            .context("cannot build an HTTP client")?;
        let deadline = tokio::time::Instant::now() + self.fetch;
        let mut answer = tokio::time::timeout_at(deadline, http.get(url).send())
            .await
            .map_err(|_| anyhow!("no answer within {:?}", self.fetch))??;
        if !answer.status().is_success() {
            bail!("HTTP {}", answer.status());
        }
        let next_block = async {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                if let Ok(app) = chain.query("/app").await {
                    if app["height"].as_u64().is_some_and(|h| h > height) {
                        return;
                    }
                }
            }
        };
        tokio::pin!(next_block);
        let mut data = Vec::new();
        loop {
            let chunk = tokio::select! {
                c = tokio::time::timeout_at(deadline, answer.chunk()) => c,
                // The next block: what arrived is this round's data.
                () = &mut next_block => break,
            };
            match chunk {
                Ok(Ok(Some(chunk))) => {
                    let room = (self.max_bytes as usize).saturating_sub(data.len());
                    data.extend_from_slice(&chunk[..chunk.len().min(room)]);
                    if data.len() as u64 >= self.max_bytes {
                        break;
                    }
                }
                Ok(Ok(None)) => break,
                Ok(Err(e)) => return Err(e).context("reading the body"),
                // The round's time is up: what arrived is the data.
                Err(_) => break,
            }
        }
        Ok(data)
    }
}
