//! Test fixtures: a temporary filesystem root with files written into it.

use std::path::Path;

use crate::Root;

pub struct Fixture {
    pub dir: tempfile::TempDir,
}

impl Fixture {
    pub fn new() -> Self {
        Fixture {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn root(&self) -> Root {
        Root::at(self.dir.path())
    }

    /// Write `content` at absolute path `abs` inside the fixture.
    pub fn file(&self, abs: &str, content: impl AsRef<[u8]>) -> &Self {
        let p = self.dir.path().join(abs.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, content).expect("write");
        self
    }

    pub fn dir(&self, abs: &str) -> &Self {
        std::fs::create_dir_all(self.dir.path().join(abs.trim_start_matches('/'))).expect("mkdir");
        self
    }

    pub fn symlink(&self, abs: &str, target: impl AsRef<Path>) -> &Self {
        let p = self.dir.path().join(abs.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::os::unix::fs::symlink(target, p).expect("symlink");
        self
    }
}
