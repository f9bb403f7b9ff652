//! The state machine: what `InitChain`, `CheckTx`, `FinalizeBlock`,
//! `Commit`, `Query` and `Info` do, independent of the ABCI transport
//! (abci.rs serves it to CometBFT; driver.rs drives it in tests).

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};
use tendermint_proto::v0_38::abci::{
    Event, EventAttribute, ExecTxResult, Misbehavior, RequestFinalizeBlock, RequestInitChain,
    ResponseFinalizeBlock, ResponseInfo, ResponseInitChain, ResponseQuery, ValidatorUpdate,
};
use tendermint_proto::v0_38::crypto::{public_key, PublicKey};
use xnode_verify::{Policy, Status};

use crate::params::{Genesis, Source};
use crate::state::{
    record_key, Account, ActivationRecord, Core, Node, NodeStatus, Record, State, Unbonding,
};
use crate::tx::{self, Msg, Tx, TxError};
use crate::upgrade::{self, Upgrade};
use crate::{codes, ChainError};

/// Where a transaction is being run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `CheckTx`: against the mempool's state, for the next block.
    Check,
    /// `FinalizeBlock`: in the block at this height.
    Deliver,
}

/// The outcome of one transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct TxOutcome {
    pub code: u32,
    pub log: String,
    pub events: Vec<Event>,
}

impl TxOutcome {
    fn rejected(code: u32, log: impl Into<String>) -> TxOutcome {
        TxOutcome {
            code,
            log: log.into(),
            events: Vec::new(),
        }
    }

    pub fn to_exec(&self) -> ExecTxResult {
        ExecTxResult {
            code: self.code,
            log: self.log.clone(),
            events: self.events.clone(),
            codespace: if self.code == 0 {
                String::new()
            } else {
                "xnode".into()
            },
            ..Default::default()
        }
    }
}

type Rejection = (u32, String);

fn reject<T>(code: u32, log: impl Into<String>) -> Result<T, Rejection> {
    Err((code, log.into()))
}

/// What an accepted message changes, decided before anything changes.
enum Effect {
    Transfer {
        to: String,
        amount: u64,
    },
    Attest(Box<Node>),
    Stake {
        amount: u64,
    },
    Unstake {
        amount: u64,
    },
    Record(Record),
    AddSource(Source),
    Activate {
        ek: String,
        record: ActivationRecord,
    },
    ScheduleUpgrade {
        height: u64,
        name: String,
    },
}

pub fn event(kind: &str, attrs: &[(&str, String)]) -> Event {
    Event {
        r#type: kind.into(),
        attributes: attrs
            .iter()
            .map(|(k, v)| EventAttribute {
                key: (*k).into(),
                value: v.clone(),
                index: true,
            })
            .collect(),
    }
}

/// CometBFT's validator address: the first 20 bytes of SHA-256 of the
/// Ed25519 public key.
pub fn validator_address(key: &[u8]) -> [u8; 20] {
    let d = Sha256::digest(key);
    let mut a = [0u8; 20];
    a.copy_from_slice(&d[..20]);
    a
}

#[derive(Debug)]
pub struct App {
    /// After the last `Commit`: what queries and `Info` see.
    committed: State,
    /// The block being finalized (equal to `committed` between blocks).
    working: State,
    /// The mempool's view: committed plus the transactions it accepted.
    check: State,
    /// Records the block being finalized added, in order.
    new_records: Vec<Record>,
    /// `working` differs from `committed` (a block finalized, not yet
    /// committed).
    uncommitted: bool,
    /// The verifier's policy for this chain's parameters; its EK-chain
    /// cache lives as long as the application.
    policy: Policy,
    upgrades: &'static [Upgrade],
}

impl App {
    /// A chain at genesis (`InitChain`).
    pub fn init(req: &RequestInitChain) -> Result<(App, ResponseInitChain), ChainError> {
        Self::init_with(req, upgrade::KNOWN)
    }

    /// As `init`, with the upgrades this binary knows (tests play an
    /// older binary with fewer).
    pub fn init_with(
        req: &RequestInitChain,
        upgrades: &'static [Upgrade],
    ) -> Result<(App, ResponseInitChain), ChainError> {
        let g = Genesis::parse(&req.app_state_bytes)?;
        let mut accounts = BTreeMap::new();
        for a in &g.accounts {
            let acct: &mut Account = accounts.entry(a.address.clone()).or_default();
            acct.balance = acct
                .balance
                .checked_add(a.balance)
                .ok_or_else(|| ChainError::Genesis(format!("accounts: {} overflows", a.address)))?;
        }
        let mut pending = BTreeMap::new();
        for (name, height) in &g.upgrades {
            upgrade::check_name(name).map_err(ChainError::Genesis)?;
            if pending.insert(*height, name.clone()).is_some() {
                return Err(ChainError::Genesis(format!(
                    "upgrades: two at height {height}"
                )));
            }
        }
        let core = Core {
            chain_id: req.chain_id.clone(),
            height: u64::try_from(req.initial_height.max(1) - 1).unwrap_or(0),
            app_version: 1,
            params: g.params,
            accounts,
            nodes: BTreeMap::new(),
            ek_owners: BTreeMap::new(),
            activations: BTreeMap::new(),
            sources: g.sources.into_iter().map(|s| (s.id.clone(), s)).collect(),
            upgrades: pending,
            applied_upgrades: BTreeMap::new(),
            block_hashes: BTreeMap::new(),
            assignments: BTreeMap::new(),
            validators: BTreeMap::new(),
            burned: 0,
            block_time: req
                .time
                .as_ref()
                .map(|t| t.seconds.max(0) as u64)
                .unwrap_or(0),
            app_hash: String::new(),
        };
        let mut state = State {
            core,
            records: BTreeMap::new(),
        };
        let hash = state.next_app_hash(&[], &[]);
        state.core.app_hash = hex::encode(hash);
        let app = App::from_state(state, upgrades)?;
        Ok((
            app,
            ResponseInitChain {
                app_hash: hash.to_vec().into(),
                ..Default::default()
            },
        ))
    }

    /// An application resuming from a committed state.
    pub fn from_state(state: State, upgrades: &'static [Upgrade]) -> Result<App, ChainError> {
        let policy = policy_for(&state)?;
        Ok(App {
            committed: state.clone(),
            working: state.clone(),
            check: state,
            new_records: Vec::new(),
            uncommitted: false,
            policy,
            upgrades,
        })
    }

    pub fn committed(&self) -> &State {
        &self.committed
    }

    pub fn info(&self) -> ResponseInfo {
        let c = &self.committed.core;
        ResponseInfo {
            data: "xnode-chain".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            app_version: c.app_version,
            last_block_height: c.height as i64,
            last_block_app_hash: hex::decode(&c.app_hash).unwrap_or_default().into(),
        }
    }

    /// `CheckTx`: would this transaction be accepted in the next block,
    /// after the ones the mempool already holds?
    pub fn check_tx(&mut self, bytes: &[u8]) -> TxOutcome {
        let mut st = std::mem::replace(&mut self.check, placeholder());
        let height = st.core.height + 1;
        let time = st.core.block_time;
        let out = self.execute(&mut st, bytes, Mode::Check, height, time);
        self.check = st;
        out
    }

    /// `FinalizeBlock`. An error means this binary must not go on (an
    /// upgrade it does not know, a height out of order): nothing changed.
    pub fn finalize_block(
        &mut self,
        req: &RequestFinalizeBlock,
    ) -> Result<ResponseFinalizeBlock, ChainError> {
        let height = u64::try_from(req.height).unwrap_or(0);
        // A block finalized again (CometBFT restarted before Commit) starts
        // over from the last commit.
        if self.uncommitted {
            self.working = self.committed.clone();
            self.new_records.clear();
            self.uncommitted = false;
        }
        let expected = self.committed.core.height + 1;
        if height != expected {
            return Err(ChainError::Halt(format!(
                "FinalizeBlock for height {height}, but the state is at {} (expected {expected})",
                self.committed.core.height
            )));
        }
        let mut st = std::mem::replace(&mut self.working, placeholder());
        let mut events = Vec::new();
        if let Some(name) = st.core.upgrades.get(&height).cloned() {
            let Some(up) = self.upgrades.iter().find(|u| u.name == name) else {
                self.working = st;
                return Err(ChainError::Halt(format!(
                    "upgrade '{name}' is scheduled at height {height} and this binary does not know it: \
                     install the release that does and start it again (the state stays at height {})",
                    height - 1
                )));
            };
            (up.apply)(&mut st.core);
            st.core.app_version = st.core.app_version.max(up.app_version);
            st.core.upgrades.remove(&height);
            st.core.applied_upgrades.insert(height, name.clone());
            events.push(event(
                "xnode.upgrade",
                &[("name", name), ("app_version", up.app_version.to_string())],
            ));
        }
        let time = req
            .time
            .as_ref()
            .map(|t| t.seconds.max(0) as u64)
            .unwrap_or(st.core.block_time);
        st.core.block_time = time;

        for m in &req.misbehavior {
            events.extend(slash_misbehavior(&mut st, m));
        }
        let mut tx_results = Vec::with_capacity(req.txs.len());
        for bytes in &req.txs {
            tx_results.push(
                self.execute(&mut st, bytes, Mode::Deliver, height, time)
                    .to_exec(),
            );
        }
        events.extend(end_block(&mut st, height));
        let validator_updates = validator_updates(&mut st);
        assign_sources(&mut st, height, &req.hash);
        remember_block(&mut st, height, &req.hash);

        st.core.height = height;
        let previous = hex::decode(&self.committed.core.app_hash).unwrap_or_default();
        let hash = st.next_app_hash(&previous, &self.new_records);
        st.core.app_hash = hex::encode(hash);
        self.working = st;
        self.uncommitted = true;
        Ok(ResponseFinalizeBlock {
            events,
            tx_results,
            validator_updates,
            consensus_param_updates: None,
            app_hash: hash.to_vec().into(),
        })
    }

    /// `Commit`: the finalized block becomes the state queries see and the
    /// mempool checks against.
    pub fn commit(&mut self) -> &State {
        self.committed = self.working.clone();
        self.check = self.working.clone();
        self.new_records.clear();
        self.uncommitted = false;
        &self.committed
    }

    pub fn query(&self, path: &str, height: i64) -> ResponseQuery {
        crate::query::answer(&self.committed, &self.check, path, height)
    }

    fn execute(
        &mut self,
        st: &mut State,
        bytes: &[u8],
        mode: Mode,
        height: u64,
        time: u64,
    ) -> TxOutcome {
        let tx = match Tx::decode(bytes) {
            Ok(t) => t,
            Err(e @ TxError::Malformed(_)) => {
                return TxOutcome::rejected(codes::MALFORMED, e.to_string())
            }
            Err(e @ TxError::BadSignature) => {
                return TxOutcome::rejected(codes::BAD_SIGNATURE, e.to_string())
            }
        };
        let b = &tx.body;
        if b.chain_id != st.core.chain_id {
            return TxOutcome::rejected(
                codes::WRONG_CHAIN,
                format!(
                    "signed for chain '{}', this is '{}'",
                    b.chain_id, st.core.chain_id
                ),
            );
        }
        let acct = st.account(&b.sender);
        if b.nonce != acct.nonce {
            let what = if b.nonce < acct.nonce {
                "already used (a replay)"
            } else {
                "ahead of the account"
            };
            return TxOutcome::rejected(
                codes::BAD_NONCE,
                format!("nonce {} is {what}: the next is {}", b.nonce, acct.nonce),
            );
        }
        let min_fee = st.core.params.fee_for(bytes.len());
        if b.fee < min_fee {
            return TxOutcome::rejected(
                codes::FEE,
                format!("fee {} is below {min_fee} for {} bytes", b.fee, bytes.len()),
            );
        }
        if acct.balance < b.fee {
            return TxOutcome::rejected(
                codes::FUNDS,
                format!("balance {} cannot pay the fee {}", acct.balance, b.fee),
            );
        }
        let spendable = acct.balance - b.fee;
        let planned = self.plan(st, &b.sender, &b.msg, spendable, height, time);
        let effect = match planned {
            Ok(e) => e,
            Err((code, log)) => return TxOutcome::rejected(code, log),
        };
        // From here on nothing fails: the fee, the nonce, the effect.
        let sender = b.sender.clone();
        let a = st.core.accounts.entry(sender.clone()).or_default();
        a.balance -= b.fee;
        a.nonce += 1;
        st.core.burned = st.core.burned.saturating_add(b.fee);
        let mut events = vec![event(
            "xnode.tx",
            &[
                ("kind", b.msg.kind().to_string()),
                ("sender", sender.clone()),
                ("fee", b.fee.to_string()),
            ],
        )];
        events.extend(self.apply(st, &sender, effect, height, mode));
        TxOutcome {
            code: codes::OK,
            log: String::new(),
            events,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn plan(
        &mut self,
        st: &State,
        sender: &str,
        msg: &Msg,
        spendable: u64,
        height: u64,
        time: u64,
    ) -> Result<Effect, Rejection> {
        let core = &st.core;
        let node = core.nodes.get(sender);
        let live_node = || match node {
            None => reject(
                codes::NOT_A_NODE,
                format!("{sender} is not a registered node"),
            ),
            Some(n) if n.status == NodeStatus::Jailed => {
                reject(codes::NOT_A_NODE, format!("node {sender} is jailed"))
            }
            Some(n) => Ok(n),
        };
        let authority = || match &core.params.authority {
            Some(a) if a == sender => Ok(()),
            _ => reject(
                codes::UNAUTHORIZED,
                "only the chain's authority (params.authority) may do this",
            ),
        };
        match msg {
            Msg::Transfer { to, amount } => {
                tx::parse_address(to).map_err(|e| (codes::INVALID, e))?;
                if *amount > spendable {
                    return reject(
                        codes::FUNDS,
                        format!("transfer of {amount} exceeds the {spendable} left after the fee"),
                    );
                }
                if core.account_overflows(to, *amount) {
                    return reject(codes::INVALID, "the recipient's balance would overflow");
                }
                Ok(Effect::Transfer {
                    to: to.clone(),
                    amount: *amount,
                })
            }
            Msg::Attest {
                envelope,
                beacon_height,
                validator_key,
            } => self
                .plan_attest(
                    st,
                    sender,
                    envelope,
                    *beacon_height,
                    validator_key,
                    height,
                    time,
                )
                .map(|n| Effect::Attest(Box::new(n))),
            Msg::Stake { amount } => {
                live_node()?;
                if *amount == 0 || *amount > spendable {
                    return reject(
                        codes::FUNDS,
                        format!(
                            "stake of {amount}: need 1 to {spendable} (the balance after the fee)"
                        ),
                    );
                }
                Ok(Effect::Stake { amount: *amount })
            }
            Msg::Unstake { amount } => {
                let n = node.ok_or((
                    codes::NOT_A_NODE,
                    format!("{sender} is not a registered node"),
                ))?;
                if *amount == 0 || *amount > n.bonded {
                    return reject(
                        codes::FUNDS,
                        format!("unstake of {amount}: need 1 to {} (bonded)", n.bonded),
                    );
                }
                Ok(Effect::Unstake { amount: *amount })
            }
            Msg::SubmitCid {
                height: at,
                source,
                cid,
            } => {
                let n = live_node()?;
                if n.status != NodeStatus::Active {
                    return reject(
                        codes::NOT_A_NODE,
                        format!("node {sender} is not active (its attestation lapsed)"),
                    );
                }
                let window = core.params.submit_window;
                if *at >= height || height - at > window {
                    return reject(
                        codes::NOT_ASSIGNED,
                        format!(
                            "an assignment of height {at} is submitted in blocks {} to {}; this is {height}",
                            at.saturating_add(1),
                            at.saturating_add(window)
                        ),
                    );
                }
                let assigned = core.assignments.get(at).and_then(|a| a.get(sender));
                if assigned != Some(source) {
                    return reject(
                        codes::NOT_ASSIGNED,
                        match assigned {
                            Some(s) => format!(
                                "at height {at} node {sender} was assigned '{s}', not '{source}'"
                            ),
                            None => format!("node {sender} had no source at height {at}"),
                        },
                    );
                }
                if st.records.contains_key(&record_key(*at, sender)) {
                    return reject(
                        codes::DUPLICATE,
                        format!("node {sender} already submitted for height {at}"),
                    );
                }
                let cid = crate::cid::check_submitted(cid).map_err(|e| (codes::INVALID, e))?;
                Ok(Effect::Record(Record {
                    height: *at,
                    source: source.clone(),
                    node: sender.to_string(),
                    cid: cid.to_string(),
                    submitted_height: height,
                }))
            }
            Msg::Activate {
                ek_public_sha256,
                ak_name,
            } => {
                if !core.params.activators.iter().any(|a| a == sender) {
                    authority()?;
                }
                let hex_of = |s: &str, len: usize| {
                    hex::decode(s).is_ok_and(|b| b.len() == len)
                        && !s.bytes().any(|b| b.is_ascii_uppercase())
                };
                // A Name is the 2-byte algorithm (SHA-256: 000b) and the digest.
                if !hex_of(ek_public_sha256, 32)
                    || !hex_of(ak_name, 34)
                    || !ak_name.starts_with("000b")
                {
                    return reject(
                        codes::INVALID,
                        "ek_public_sha256 must be 32 lowercase hex bytes and ak_name a SHA-256 Name (000b and 32 bytes)",
                    );
                }
                Ok(Effect::Activate {
                    ek: ek_public_sha256.clone(),
                    record: ActivationRecord {
                        ak_name: ak_name.clone(),
                        activator: sender.to_string(),
                        height,
                    },
                })
            }
            Msg::AddSource { id, url } => {
                authority()?;
                let s = Source {
                    id: id.clone(),
                    url: url.clone(),
                };
                s.validate().map_err(|e| (codes::INVALID, e))?;
                if core.sources.contains_key(id) {
                    return reject(codes::DUPLICATE, format!("source '{id}' exists"));
                }
                Ok(Effect::AddSource(s))
            }
            Msg::ScheduleUpgrade { name, height: at } => {
                authority()?;
                upgrade::check_name(name).map_err(|e| (codes::INVALID, e))?;
                if *at <= height {
                    return reject(
                        codes::INVALID,
                        format!("upgrade height {at} is not after {height}"),
                    );
                }
                if let Some(other) = core.upgrades.get(at) {
                    return reject(
                        codes::DUPLICATE,
                        format!("'{other}' is already scheduled at {at}"),
                    );
                }
                Ok(Effect::ScheduleUpgrade {
                    height: *at,
                    name: name.clone(),
                })
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn plan_attest(
        &mut self,
        st: &State,
        sender: &str,
        envelope: &str,
        beacon_height: u64,
        validator_key: &Option<String>,
        height: u64,
        time: u64,
    ) -> Result<Node, Rejection> {
        let core = &st.core;
        let existing = core.nodes.get(sender);
        if existing.is_some_and(|n| n.status == NodeStatus::Jailed) {
            return reject(codes::NOT_A_NODE, format!("node {sender} is jailed"));
        }
        let bytes = tx::envelope_bytes(envelope).map_err(|e| (codes::INVALID, e))?;
        let beacon = core.block_hashes.get(&beacon_height).ok_or_else(|| {
            let have = match (core.block_hashes.keys().next(), core.block_hashes.keys().last()) {
                (Some(a), Some(b)) => format!("{a} to {b}"),
                _ => "none yet".into(),
            };
            (
                codes::ATTESTATION,
                format!("beacon height {beacon_height} is not one of the last blocks the chain keeps ({have})"),
            )
        })?;
        // The EK decides which activation applies; a malformed envelope
        // gets the verifier's full account below.
        let ek_id = serde_json::from_slice::<xnode_verify::Envelope>(&bytes)
            .ok()
            .and_then(|env| xnode_verify::format::unb64("tpm.ek_public", &env.tpm.ek_public).ok())
            .map(|ek| xnode_verify::credential::ek_id(&ek))
            .unwrap_or_default();
        // The chain's policy, kept (with its EK-chain cache) across
        // transactions; only these fields are the transaction's own.
        self.policy.activations = Some(xnode_verify::credential::Registry {
            version: xnode_verify::credential::REGISTRY_VERSION.into(),
            activations: core
                .activations
                .get(&ek_id)
                .map(|a| xnode_verify::credential::Activation {
                    ek_public_sha256: ek_id.clone(),
                    ak_name: a.ak_name.clone(),
                    activated_unix: 0,
                })
                .into_iter()
                .collect(),
        });
        self.policy.beacon = hex::decode(beacon).ok();
        self.policy.now_unix = time;
        self.policy.min_sequence = existing.map(|n| n.sequence.saturating_add(1));
        let outcome = xnode_verify::verify(&bytes, &self.policy);
        if !outcome.ok {
            let why: Vec<String> = outcome
                .failed()
                .map(|c| format!("{}: {}", c.name, c.detail))
                .collect();
            return reject(
                codes::ATTESTATION,
                format!("attestation rejected: {}", why.join("; ")),
            );
        }
        let Some(report) = outcome.report else {
            return reject(codes::ATTESTATION, "attestation rejected: no report");
        };
        if report.node_key != sender {
            return reject(
                codes::ATTESTATION,
                format!(
                    "the envelope is node {}'s; the sender is {sender}",
                    report.node_key
                ),
            );
        }
        let passed = |name: &str| {
            outcome
                .checks
                .iter()
                .any(|c| c.name == name && c.status == Status::Pass)
        };
        // The verifier fails it without CAs or a certificate; said again
        // here so that no policy change can make a TPM of no known maker
        // acceptable.
        if !passed("ek_certificate") {
            return reject(
                codes::ATTESTATION,
                "attestation rejected: ek_certificate: this TPM showed no certificate chaining to an EK CA the chain trusts (params.ek_cas)",
            );
        }
        if report.software_tpm && !core.params.allow_software_tpm {
            return reject(
                codes::ATTESTATION,
                "attestation rejected: the node reports a software TPM and this chain does not accept them",
            );
        }
        if let Some(owner) = core.ek_owners.get(&ek_id).filter(|o| *o != sender) {
            return reject(
                codes::ATTESTATION,
                format!("this TPM (EK {}) already backs node {owner}", &ek_id[..16]),
            );
        }
        if let Some(n) = existing.filter(|n| n.ek_id != ek_id) {
            return reject(
                codes::ATTESTATION,
                format!(
                    "node {sender} registered with EK {} and attests with EK {}: a node keeps its TPM",
                    &n.ek_id[..16],
                    &ek_id[..16]
                ),
            );
        }
        if let Some(v) = validator_key {
            tx::parse_address(v).map_err(|e| (codes::INVALID, format!("validator_key: {e}")))?;
            if let Some(other) = core
                .nodes
                .values()
                .find(|n| n.key != sender && n.validator_key.as_ref() == Some(v))
            {
                return reject(
                    codes::DUPLICATE,
                    format!("validator key is node {}'s", other.key),
                );
            }
        }
        let capacity = outcome
            .checks
            .iter()
            .find(|c| c.name == "capacity")
            .map(|c| c.detail.clone())
            .unwrap_or_default();
        Ok(Node {
            key: sender.to_string(),
            peer_id: report.node_id.clone(),
            ek_id,
            status: NodeStatus::Active,
            registered_height: existing.map(|n| n.registered_height).unwrap_or(height),
            attested_height: height,
            sequence: report.sequence,
            software_tpm: report.software_tpm,
            system_store_path: report.system_store_path.clone(),
            capacity,
            validator_key: validator_key
                .clone()
                .or_else(|| existing.and_then(|n| n.validator_key.clone())),
            bonded: existing.map(|n| n.bonded).unwrap_or(0),
            unbonding: existing.map(|n| n.unbonding.clone()).unwrap_or_default(),
            slashed: existing.map(|n| n.slashed).unwrap_or(0),
        })
    }

    fn apply(
        &mut self,
        st: &mut State,
        sender: &str,
        effect: Effect,
        height: u64,
        mode: Mode,
    ) -> Vec<Event> {
        match effect {
            Effect::Transfer { to, amount } => {
                if let Some(a) = st.core.accounts.get_mut(sender) {
                    a.balance -= amount;
                }
                let b = st.core.accounts.entry(to.clone()).or_default();
                b.balance += amount;
                vec![event(
                    "xnode.transfer",
                    &[("to", to), ("amount", amount.to_string())],
                )]
            }
            Effect::Attest(node) => {
                let first = !st.core.nodes.contains_key(sender);
                st.core
                    .ek_owners
                    .insert(node.ek_id.clone(), sender.to_string());
                let ev = event(
                    "xnode.attest",
                    &[
                        ("node", sender.to_string()),
                        ("peer_id", node.peer_id.clone()),
                        ("sequence", node.sequence.to_string()),
                        ("registered", first.to_string()),
                        ("capacity", node.capacity.clone()),
                    ],
                );
                st.core.nodes.insert(sender.to_string(), *node);
                vec![ev]
            }
            Effect::Stake { amount } => {
                if let Some(a) = st.core.accounts.get_mut(sender) {
                    a.balance -= amount;
                }
                if let Some(n) = st.core.nodes.get_mut(sender) {
                    n.bonded += amount;
                }
                vec![event(
                    "xnode.stake",
                    &[("node", sender.to_string()), ("amount", amount.to_string())],
                )]
            }
            Effect::Unstake { amount } => {
                let release_height = height.saturating_add(st.core.params.unbonding_blocks);
                if let Some(n) = st.core.nodes.get_mut(sender) {
                    n.bonded -= amount;
                    n.unbonding.push(Unbonding {
                        release_height,
                        amount,
                    });
                }
                vec![event(
                    "xnode.unstake",
                    &[
                        ("node", sender.to_string()),
                        ("amount", amount.to_string()),
                        ("release_height", release_height.to_string()),
                    ],
                )]
            }
            Effect::Record(r) => {
                let ev = event(
                    "xnode.cid",
                    &[
                        ("node", r.node.clone()),
                        ("height", r.height.to_string()),
                        ("source", r.source.clone()),
                        ("cid", r.cid.clone()),
                    ],
                );
                if mode == Mode::Deliver {
                    self.new_records.push(r.clone());
                }
                st.records.insert(record_key(r.height, &r.node), r);
                vec![ev]
            }
            Effect::Activate { ek, record } => {
                let ev = event(
                    "xnode.activate",
                    &[("ek", ek.clone()), ("ak_name", record.ak_name.clone())],
                );
                st.core.activations.insert(ek, record);
                vec![ev]
            }
            Effect::AddSource(s) => {
                let ev = event(
                    "xnode.source",
                    &[("id", s.id.clone()), ("url", s.url.clone())],
                );
                st.core.sources.insert(s.id.clone(), s);
                vec![ev]
            }
            Effect::ScheduleUpgrade { height: at, name } => {
                let ev = event(
                    "xnode.upgrade_scheduled",
                    &[("name", name.clone()), ("height", at.to_string())],
                );
                st.core.upgrades.insert(at, name);
                vec![ev]
            }
        }
    }
}

impl Core {
    fn account_overflows(&self, to: &str, amount: u64) -> bool {
        self.accounts
            .get(to)
            .is_some_and(|a| a.balance.checked_add(amount).is_none())
    }
}

fn placeholder() -> State {
    State {
        core: Core {
            chain_id: String::new(),
            height: 0,
            app_version: 0,
            params: crate::params::development_params(),
            accounts: BTreeMap::new(),
            nodes: BTreeMap::new(),
            ek_owners: BTreeMap::new(),
            activations: BTreeMap::new(),
            sources: BTreeMap::new(),
            upgrades: BTreeMap::new(),
            applied_upgrades: BTreeMap::new(),
            block_hashes: BTreeMap::new(),
            assignments: BTreeMap::new(),
            validators: BTreeMap::new(),
            burned: 0,
            block_time: 0,
            app_hash: String::new(),
        },
        records: BTreeMap::new(),
    }
}

fn policy_for(state: &State) -> Result<Policy, ChainError> {
    let p = &state.core.params;
    let expected_pcrs = if p.expected_pcrs.is_empty() {
        None
    } else {
        Some(
            p.expected_pcrs
                .iter()
                .map(|(i, v)| (*i, hex::decode(v).unwrap_or_default()))
                .collect(),
        )
    };
    Ok(Policy {
        ek_cas: p.ek_authorities()?,
        max_age_secs: Some(p.max_report_age_secs),
        expected_pcrs,
        ..Default::default()
    })
}

/// Slash `bps` of a node's bonded and unbonding stake; returns the amount.
fn slash(core: &mut Core, key: &str, bps: u64) -> u64 {
    let Some(n) = core.nodes.get_mut(key) else {
        return 0;
    };
    let cut = |x: u64| (u128::from(x) * u128::from(bps) / 10_000) as u64;
    let mut total = cut(n.bonded);
    n.bonded -= total;
    for u in &mut n.unbonding {
        let c = cut(u.amount);
        u.amount -= c;
        total += c;
    }
    n.slashed = n.slashed.saturating_add(total);
    core.burned = core.burned.saturating_add(total);
    total
}

fn slash_misbehavior(st: &mut State, m: &Misbehavior) -> Vec<Event> {
    let Some(addr) = m.validator.as_ref().map(|v| v.address.to_vec()) else {
        return Vec::new();
    };
    let culprit = st.core.nodes.values().find(|n| {
        n.validator_key
            .as_ref()
            .and_then(|k| hex::decode(k).ok())
            .is_some_and(|k| validator_address(&k).as_slice() == addr.as_slice())
    });
    let Some(key) = culprit
        .filter(|n| n.status != NodeStatus::Jailed)
        .map(|n| n.key.clone())
    else {
        return Vec::new();
    };
    let bps = st.core.params.slash_double_sign_bps;
    let amount = slash(&mut st.core, &key, bps);
    if let Some(n) = st.core.nodes.get_mut(&key) {
        n.status = NodeStatus::Jailed;
    }
    vec![event(
        "xnode.slash",
        &[
            ("node", key),
            ("reason", "double_sign".into()),
            ("evidence_height", m.height.to_string()),
            ("amount", amount.to_string()),
        ],
    )]
}

/// Unbonded stake returns; nodes past their attestation window lapse.
fn end_block(st: &mut State, height: u64) -> Vec<Event> {
    let mut events = Vec::new();
    let window = st.core.params.attest_window;
    let bps = st.core.params.slash_missed_attestation_bps;
    let keys: Vec<String> = st.core.nodes.keys().cloned().collect();
    for key in keys {
        let mut released = 0;
        if let Some(n) = st.core.nodes.get_mut(&key) {
            n.unbonding.retain(|u| {
                if u.release_height <= height {
                    released += u.amount;
                    false
                } else {
                    true
                }
            });
        }
        if released > 0 {
            let a = st.core.accounts.entry(key.clone()).or_default();
            a.balance = a.balance.saturating_add(released);
        }
        let lapsed = st.core.nodes.get(&key).is_some_and(|n| {
            n.status == NodeStatus::Active && height > n.attested_height.saturating_add(window)
        });
        if lapsed {
            let amount = slash(&mut st.core, &key, bps);
            if let Some(n) = st.core.nodes.get_mut(&key) {
                n.status = NodeStatus::Lapsed;
            }
            events.push(event(
                "xnode.slash",
                &[
                    ("node", key.clone()),
                    ("reason", "missed_attestation".into()),
                    ("amount", amount.to_string()),
                ],
            ));
        }
    }
    events
}

/// The voting power staked, attested nodes should have, as updates to
/// what CometBFT last heard from this application.
fn validator_updates(st: &mut State) -> Vec<ValidatorUpdate> {
    let p = &st.core.params;
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    for n in st.core.nodes.values() {
        if let (NodeStatus::Active, Some(v)) = (n.status, &n.validator_key) {
            if n.bonded >= p.min_stake && n.bonded / p.power_unit > 0 {
                want.insert(v.clone(), n.bonded / p.power_unit);
            }
        }
    }
    let mut updates = Vec::new();
    for (k, power) in &want {
        if st.core.validators.get(k) != Some(power) {
            updates.push(update(k, *power));
        }
    }
    for k in st.core.validators.keys() {
        if !want.contains_key(k) {
            updates.push(update(k, 0));
        }
    }
    st.core.validators = want;
    updates
}

fn update(key: &str, power: u64) -> ValidatorUpdate {
    ValidatorUpdate {
        pub_key: Some(PublicKey {
            sum: Some(public_key::Sum::Ed25519(
                hex::decode(key).unwrap_or_default(),
            )),
        }),
        power: i64::try_from(power).unwrap_or(i64::MAX),
    }
}

fn assign_sources(st: &mut State, height: u64, block_hash: &[u8]) {
    let active = st
        .core
        .nodes
        .values()
        .filter(|n| n.status == NodeStatus::Active)
        .map(|n| n.key.as_str());
    let a = crate::assign::assign(
        block_hash,
        active,
        st.core.sources.keys().map(|s| s.as_str()),
    );
    st.core.assignments.insert(height, a);
    let keep_from = height.saturating_sub(st.core.params.submit_window);
    st.core.assignments = st.core.assignments.split_off(&keep_from);
}

fn remember_block(st: &mut State, height: u64, hash: &[u8]) {
    st.core.block_hashes.insert(height, hex::encode(hash));
    let keep_from = (height + 1).saturating_sub(st.core.params.beacon_window);
    st.core.block_hashes = st.core.block_hashes.split_off(&keep_from);
}
