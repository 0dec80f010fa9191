//! The master key that encrypts signing secrets at rest.
//!
//! It comes from `HOOKSIGN_MASTER_KEY` / `master_key` (base64 of 32 bytes) or a key file. With
//! SQLite and neither given, one is generated at `<data_dir>/master.key` (mode 0600) with a
//! warning, so a first run just works. With PostgreSQL a missing key is an error: several
//! instances share the database and must share the key, and a generated one would silently
//! differ per machine.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::config::{decode_master_key, Config, DatabaseKind};

/// 32 secret bytes and a short public id derived from them.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MasterKey {
    bytes: [u8; 32],
    #[zeroize(skip)]
    id: String,
}

impl MasterKey {
    /// Wraps raw key bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"hooksign master key id\0");
        hasher.update(bytes);
        let id = format!("mk_{}", hex::encode(&hasher.finalize()[..6]));
        Self { bytes, id }
    }

    /// A fresh random key.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self::from_bytes(bytes)
    }

    /// Parses base64 of 32 bytes.
    pub fn from_base64(text: &str) -> Result<Self, String> {
        decode_master_key(text).map(Self::from_bytes)
    }

    /// The base64 form written to key files.
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.bytes)
    }

    /// The key id stored beside every ciphertext (not secret).
    pub fn id(&self) -> &str {
        &self.id
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.bytes
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey({})", self.id)
    }
}

/// Where the master key came from, for the start-up log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterKeySource {
    Config,
    File(PathBuf),
    Generated(PathBuf),
}

/// Why no master key could be had.
#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    #[error(
        "no master key: with PostgreSQL every instance must share one. Set HOOKSIGN_MASTER_KEY \
         (base64 of 32 random bytes, e.g. `openssl rand -base64 32`) or master_key_file"
    )]
    MissingForPostgres,
    #[error("master key file {path}: {message}")]
    File { path: PathBuf, message: String },
}

/// Loads the configured master key, generating one for SQLite when none is configured.
pub fn load_master_key(config: &Config) -> Result<(MasterKey, MasterKeySource), MasterKeyError> {
    if let Some(text) = &config.master_key {
        let key = MasterKey::from_base64(&text.0).map_err(|message| MasterKeyError::File {
            path: PathBuf::from("HOOKSIGN_MASTER_KEY"),
            message,
        })?;
        return Ok((key, MasterKeySource::Config));
    }
    if let Some(path) = &config.master_key_file {
        return Ok((read_key_file(path)?, MasterKeySource::File(path.clone())));
    }
    if config.database_kind().ok() == Some(DatabaseKind::Postgres) {
        return Err(MasterKeyError::MissingForPostgres);
    }
    let path = config.data_dir.join("master.key");
    if path.exists() {
        return Ok((read_key_file(&path)?, MasterKeySource::File(path)));
    }
    let key = MasterKey::generate();
    write_private_file(&path, key.to_base64().as_bytes()).map_err(|err| MasterKeyError::File {
        path: path.clone(),
        message: err.to_string(),
    })?;
    Ok((key, MasterKeySource::Generated(path)))
}

/// The configured previous master key, if any (see `master_key_previous`).
pub fn load_previous_master_key(config: &Config) -> Result<Option<MasterKey>, MasterKeyError> {
    config
        .master_key_previous
        .as_ref()
        .map(|text| {
            MasterKey::from_base64(&text.0).map_err(|message| MasterKeyError::File {
                path: PathBuf::from("HOOKSIGN_MASTER_KEY_PREVIOUS"),
                message,
            })
        })
        .transpose()
}

/// Reads a base64 key file.
pub fn read_key_file(path: &Path) -> Result<MasterKey, MasterKeyError> {
    let file_error = |message: String| MasterKeyError::File {
        path: path.to_owned(),
        message,
    };
    let text = fs::read_to_string(path).map_err(|err| file_error(err.to_string()))?;
    MasterKey::from_base64(&text).map_err(file_error)
}

/// Creates `dir` and any missing parents readable only by the owner (0700), whatever the
/// umask. An existing folder keeps its mode: it may be shared on purpose (a mount point).
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(dir)?;
    // DirBuilder's mode is filtered by the umask; set it exactly.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Creates `path` empty with mode 0600 if it does not exist, and narrows it to 0600 if it
/// does (a database file made by an older version, or by a tool with a loose umask).
pub fn ensure_private_file(path: &Path) -> std::io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    drop(options.open(path)?);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = fs::metadata(path)?.permissions().mode() & 0o777;
        if mode != 0o600 {
            fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(())
}

/// Writes `contents` to a new file readable only by its owner (0600), creating parent folders
/// (0700). Refuses to overwrite an existing file.
pub fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        create_private_dir(parent)?;
    }
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.write_all(b"\n")?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Redacted;

    fn config_in(dir: &Path) -> Config {
        Config {
            data_dir: dir.to_owned(),
            ..Config::default()
        }
    }

    #[test]
    fn sqlite_without_a_key_generates_a_private_file_once() {
        let dir = tempfile::tempdir().unwrap();
        let config = config_in(dir.path());
        let (first, source) = load_master_key(&config).unwrap();
        let path = dir.path().join("master.key");
        assert_eq!(source, MasterKeySource::Generated(path.clone()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(
                fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let (second, source) = load_master_key(&config).unwrap();
        assert_eq!(source, MasterKeySource::File(path));
        assert_eq!(first.id(), second.id());
    }

    #[test]
    fn postgres_without_a_key_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config_in(dir.path());
        config.database.url = "postgres://localhost/hooksign".into();
        let err = load_master_key(&config).unwrap_err().to_string();
        assert!(err.contains("HOOKSIGN_MASTER_KEY"), "{err}");
    }

    #[test]
    fn configured_key_is_used_as_given() {
        let dir = tempfile::tempdir().unwrap();
        let key = MasterKey::generate();
        let mut config = config_in(dir.path());
        config.master_key = Some(Redacted(key.to_base64()));
        let (loaded, source) = load_master_key(&config).unwrap();
        assert_eq!(source, MasterKeySource::Config);
        assert_eq!(loaded.id(), key.id());
        assert!(!dir.path().join("master.key").exists());
    }
}
