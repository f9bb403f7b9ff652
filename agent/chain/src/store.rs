//! The committed state on disk: one JSON file, replaced atomically
//! (written beside, synced, renamed) at every `Commit`, so a crash leaves
//! the last commit or the one before it, never half of one. CometBFT
//! replays the blocks after the height it finds (its handshake).

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::state::State;
use crate::ChainError;

pub const STATE_FILE: &str = "state.json";

#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    pub fn open(dir: &Path) -> Result<Store, ChainError> {
        std::fs::create_dir_all(dir).map_err(|e| ChainError::Store {
            path: dir.to_path_buf(),
            why: format!("cannot create the state directory: {e}"),
        })?;
        Ok(Store {
            dir: dir.to_path_buf(),
        })
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// The last committed state, or None before genesis.
    pub fn load(&self) -> Result<Option<State>, ChainError> {
        let path = self.path();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(ChainError::Store {
                    path,
                    why: e.to_string(),
                })
            }
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| ChainError::Store {
                path,
                why: format!(
                    "not a state this application wrote ({e}); it is left as it is: move it away \
                 and let CometBFT replay the chain from genesis"
                ),
            })
    }

    pub fn save(&self, state: &State) -> Result<(), ChainError> {
        let path = self.path();
        let tmp = self.dir.join(format!("{STATE_FILE}.tmp"));
        let err = |why: String| ChainError::Store {
            path: path.clone(),
            why,
        };
        let bytes = serde_json::to_vec(state).map_err(|e| err(e.to_string()))?;
        let mut f = std::fs::File::create(&tmp).map_err(|e| err(format!("create: {e}")))?;
        f.write_all(&bytes)
            .and_then(|_| f.sync_all())
            .map_err(|e| err(format!("write: {e}")))?;
        std::fs::rename(&tmp, &path).map_err(|e| err(format!("rename: {e}")))?;
        Ok(())
    }
}
