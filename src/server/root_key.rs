//! The root key file: 64 hex characters (256 bits), readable by the daemon's user only.

use std::io::Write;
use std::path::Path;

use zeroize::Zeroizing;

use crate::crypto::{KeyMaterial, RootKey};

use super::StartError;

/// Reads the root key at `path`. Creates it only if `may_create` (a data directory with no database yet):
/// a missing root key beside an existing database is an operator's mistake, not a reason to make a new one.
pub fn load_or_create(path: &Path, may_create: bool) -> Result<(RootKey, bool), StartError> {
    if !path.exists() {
        if !may_create {
            return Err(StartError::RootKey(format!(
                "{} does not exist, but the database does: restore the root key file that belongs to it \
                 (a new root key cannot open the existing keys)",
                path.display()
            )));
        }
        create(path)?;
        let (root, _) = load_or_create(path, false)?;
        return Ok((root, true));
    }
    check_permissions(path)?;
    let text = Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|e| StartError::RootKey(format!("cannot read {}: {e}", path.display())))?,
    );
    let mut bytes = Zeroizing::new([0u8; KeyMaterial::LEN]);
    hex::decode_to_slice(text.trim(), bytes.as_mut()).map_err(|_| {
        StartError::RootKey(format!(
            "{} must hold exactly 64 hexadecimal characters (a 256-bit key)",
            path.display()
        ))
    })?;
    Ok((RootKey::new(KeyMaterial::from_bytes(&mut bytes)), false))
}

fn create(path: &Path) -> Result<(), StartError> {
    let material = KeyMaterial::generate()
        .map_err(|e| StartError::RootKey(format!("the OS refused randomness: {e}")))?;
    let mut text = Zeroizing::new(hex::encode(material.expose_secret()));
    text.push('\n');
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .map_err(|e| StartError::RootKey(format!("cannot create {}: {e}", path.display())))?;
    file.write_all(text.as_bytes())
        .and_then(|_| file.sync_all())
        .map_err(|e| StartError::RootKey(format!("cannot write {}: {e}", path.display())))?;
    Ok(())
}

#[cfg(unix)]
fn check_permissions(path: &Path) -> Result<(), StartError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|e| StartError::RootKey(format!("cannot stat {}: {e}", path.display())))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(StartError::RootKey(format!(
            "{} is readable or writable by other users (mode {:o}); run `chmod 600 {}`",
            path.display(),
            mode & 0o777,
            path.display()
        )));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_permissions(_: &Path) -> Result<(), StartError> {
    Ok(())
}
