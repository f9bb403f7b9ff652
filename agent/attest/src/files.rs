//! Secret and state files: written atomically (a crash leaves the old file
//! or none, never a torn one) with 0600 permissions.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::AttestError;

/// Write `bytes` to `path` atomically with mode 0600.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), AttestError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(AttestError::io("create", dir))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".xnode-")
        .tempfile_in(dir)
        .map_err(AttestError::io("create a temporary file in", dir))?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(AttestError::io("restrict permissions of", tmp.path()))?;
    tmp.write_all(bytes)
        .map_err(AttestError::io("write", tmp.path()))?;
    tmp.as_file()
        .sync_all()
        .map_err(AttestError::io("sync", tmp.path()))?;
    tmp.persist(path).map_err(|e| AttestError::Io {
        action: "replace",
        path: path.to_path_buf(),
        source: e.error,
    })?;
    // Make the rename itself durable.
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(AttestError::io("sync", dir))?;
    Ok(())
}

/// Read a file that may not exist yet.
pub fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, AttestError> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(AttestError::Io {
            action: "read",
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_files_are_0600_and_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/key");
        write_private(&p, b"one").unwrap();
        write_private(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // No temporary files are left behind.
        assert_eq!(std::fs::read_dir(p.parent().unwrap()).unwrap().count(), 1);
        assert_eq!(read_optional(&dir.path().join("none")).unwrap(), None);
    }
}
