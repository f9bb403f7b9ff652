//! The ABCI 2.0 server (CometBFT v0.38) over `tendermint-abci`: one
//! application behind a lock, shared by CometBFT's four connections.

use std::sync::{Arc, Mutex, MutexGuard};

use tendermint_abci::Application;
use tendermint_proto::v0_38::abci::{
    RequestCheckTx, RequestFinalizeBlock, RequestInfo, RequestInitChain, RequestQuery,
    ResponseCheckTx, ResponseCommit, ResponseFinalizeBlock, ResponseInfo, ResponseInitChain,
    ResponseQuery,
};

use crate::store::Store;
use crate::upgrade::{Upgrade, KNOWN};
use crate::{App, ChainError};

#[derive(Debug)]
struct Inner {
    app: Option<App>,
    store: Store,
    upgrades: &'static [Upgrade],
}

#[derive(Debug, Clone)]
pub struct AbciApp {
    inner: Arc<Mutex<Inner>>,
}

/// Stop the process: CometBFT stops with it, and both resume from the
/// last commit.
fn halt(e: &ChainError) -> ! {
    eprintln!("xnode-chain: {e}");
    std::process::exit(3)
}

impl AbciApp {
    /// Resume from the store's last commit, or wait for `InitChain`.
    pub fn open(store: Store) -> Result<AbciApp, ChainError> {
        Self::open_with(store, KNOWN)
    }

    pub fn open_with(store: Store, upgrades: &'static [Upgrade]) -> Result<AbciApp, ChainError> {
        let app = match store.load()? {
            Some(state) => Some(App::from_state(state, upgrades)?),
            None => None,
        };
        Ok(AbciApp {
            inner: Arc::new(Mutex::new(Inner {
                app,
                store,
                upgrades,
            })),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere leaves the state as the last commit left it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Application for AbciApp {
    fn info(&self, _req: RequestInfo) -> ResponseInfo {
        match &self.lock().app {
            Some(app) => app.info(),
            // Height 0: CometBFT sends InitChain.
            None => ResponseInfo {
                data: "xnode-chain".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                ..Default::default()
            },
        }
    }

    fn init_chain(&self, req: RequestInitChain) -> ResponseInitChain {
        let mut inner = self.lock();
        // At height 0 no block has been committed: CometBFT, restarted
        // before its first block, sends InitChain again, and the genesis
        // state is made anew. Past height 0 the state is another chain's.
        if let Some(app) = &inner.app {
            let c = &app.committed().core;
            if c.height > 0 {
                halt(&ChainError::Genesis(format!(
                    "InitChain, but this state directory holds chain '{}' at height {}: \
                     give this chain a state directory of its own",
                    c.chain_id, c.height
                )));
            }
        }
        match App::init_with(&req, inner.upgrades) {
            Ok((app, resp)) => {
                if let Err(e) = inner.store.save(app.committed()) {
                    halt(&e);
                }
                inner.app = Some(app);
                resp
            }
            Err(e) => halt(&e),
        }
    }

    fn query(&self, req: RequestQuery) -> ResponseQuery {
        match &self.lock().app {
            Some(app) => app.query(&req.path, req.height),
            None => ResponseQuery {
                code: crate::codes::NOT_FOUND,
                log: "the chain has not started (no InitChain yet)".into(),
                ..Default::default()
            },
        }
    }

    fn check_tx(&self, req: RequestCheckTx) -> ResponseCheckTx {
        let mut inner = self.lock();
        let Some(app) = inner.app.as_mut() else {
            return ResponseCheckTx {
                code: crate::codes::INVALID,
                log: "the chain has not started".into(),
                ..Default::default()
            };
        };
        let out = app.check_tx(&req.tx);
        ResponseCheckTx {
            code: out.code,
            log: out.log,
            events: out.events,
            codespace: if out.code == 0 {
                String::new()
            } else {
                "xnode".into()
            },
            ..Default::default()
        }
    }

    fn finalize_block(&self, req: RequestFinalizeBlock) -> ResponseFinalizeBlock {
        let mut inner = self.lock();
        let Some(app) = inner.app.as_mut() else {
            halt(&ChainError::Halt("FinalizeBlock before InitChain".into()));
        };
        match app.finalize_block(&req) {
            Ok(resp) => resp,
            Err(e) => halt(&e),
        }
    }

    fn commit(&self) -> ResponseCommit {
        let mut inner = self.lock();
        let Inner { app, store, .. } = &mut *inner;
        let Some(app) = app.as_mut() else {
            halt(&ChainError::Halt("Commit before InitChain".into()));
        };
        if let Err(e) = store.save(app.commit()) {
            halt(&e);
        }
        ResponseCommit::default()
    }
}
