//! The host's error types for the network half: configuration, start-up and state file.
//!
//! Each error is one line that says what went wrong and where (file, line:column, field path,
//! address), because the CLI prints exactly that line and exits non-zero.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use thiserror::Error;

/// A bootstrap file that cannot be run: unreadable, not YAML, an unknown or bad field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The config file.
    pub file: PathBuf,
    /// 1-based line and column in the file, when the YAML parser knows them.
    pub location: Option<(usize, usize)>,
    /// Field path, e.g. `static_resources.clusters[0].connect_timeout` (may be empty).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    /// An error about `field` with no known line.
    pub fn field(
        file: impl Into<PathBuf>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            file: file.into(),
            location: None,
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, col)) = self.location {
            write!(f, ":{line}:{col}")?;
        }
        if self.field.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": {}: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// A state file that cannot be used.
#[derive(Debug, Error)]
pub enum StateFileError {
    /// The file exists but cannot be read.
    #[error("state file {path}: cannot read: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a state file we wrote (it is left untouched).
    #[error("state file {path} is corrupt ({reason}); it was left untouched — move it away or fix it to start")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// Writing failed.
    #[error("state file {path}: cannot save: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Why the server could not start (or reload).
#[derive(Debug, Error)]
pub enum StartError {
    /// The bootstrap is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The state file is wrong.
    #[error(transparent)]
    StateFile(#[from] StateFileError),
    /// A socket could not be bound.
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        /// `listener "name"` or `admin`.
        what: String,
        /// The address.
        addr: SocketAddr,
        /// Why (e.g. address in use).
        source: std::io::Error,
    },
    /// A Wasm plugin failed to load or rejected its configuration.
    #[error("{0}")]
    Plugin(String),
    /// Anything else (thread spawn, runtime creation).
    #[error("{0}")]
    Internal(String),
}
