//! One daemon per data directory: an exclusive `flock` on `<data-dir>/kmsd.lock`, held while serving, and taken by
//! offline tools that must not run beside a daemon (root-key rotation).

use std::fs::File;
use std::path::Path;

use super::StartError;

/// Held for as long as it lives; the OS releases it if the process dies.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    pub fn acquire(data_dir: &Path) -> Result<Self, StartError> {
        let path = data_dir.join("kmsd.lock");
        let mut options = std::fs::OpenOptions::new();
        options.create(true).truncate(false).write(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(&path).map_err(|e| StartError::DataDir {
            path: path.clone(),
            reason: format!("cannot open the lock file: {e}"),
        })?;
        #[cfg(unix)]
        rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(|_| {
            StartError::DataDir {
                path: data_dir.to_owned(),
                reason: "another kmsd process is using this data directory (it holds kmsd.lock); stop it first"
                    .into(),
            }
        })?;
        Ok(DataDirLock { _file: file })
    }
}
