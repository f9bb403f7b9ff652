//! The node's state files, through the shared atomic writer, with errors
//! that name the file.

use std::path::Path;

use crate::AttestError;

pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), AttestError> {
    xnode_verify::files::write_private(path, bytes).map_err(AttestError::io("write", path))
}

pub fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, AttestError> {
    xnode_verify::files::read_optional(path).map_err(AttestError::io("read", path))
}
