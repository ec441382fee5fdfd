//! `--state-file`: the shared-data store survives a restart (Envoy's does not — this is the
//! host's addition, like the seed's JSON file).
//!
//! - Loaded before the first VM starts; a missing file means "start empty".
//! - A file that cannot be read or parsed stops start-up with a clear error and is never
//!   overwritten (nothing is saved before it loaded).
//! - Saved atomically: a temp file in the same directory, fsync, rename over the old one,
//!   fsync the directory, so a crash leaves either the old or the new file, never half.
//! - Saved when the store changes (debounced) and once more at shutdown.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::StateFileError;
use crate::shared_data::{SharedData, Snapshot};

/// Format marker written into every file, so a random JSON file is not mistaken for state.
const FORMAT: &str = "failover-host state v1";
/// How long to wait after a change for more changes before saving.
pub const DEBOUNCE: Duration = Duration::from_millis(200);

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    format: String,
    shared_data: Snapshot,
}

/// Reads the state file; `Ok(None)` when it does not exist.
///
/// # Errors
/// [`StateFileError::Read`] or [`StateFileError::Corrupt`]; the file is not touched.
pub fn load(path: &Path) -> Result<Option<Snapshot>, StateFileError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StateFileError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let corrupt = |reason: String| StateFileError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let file: StateFile = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
    if file.format != FORMAT {
        return Err(corrupt(format!("unknown format {:?}", file.format)));
    }
    // Check every value decodes now, so restore cannot fail half-way later.
    for (vm_id, entries) in &file.shared_data.namespaces {
        for (key, entry) in entries {
            entry
                .value()
                .map_err(|e| corrupt(format!("{vm_id}/{key}: {}", e.0)))?;
        }
    }
    Ok(Some(file.shared_data))
}

/// Loads the file into `store` (before any VM starts).
///
/// # Errors
/// See [`load`].
pub fn restore_into(path: &Path, store: &SharedData) -> Result<bool, StateFileError> {
    match load(path)? {
        None => Ok(false),
        Some(snapshot) => {
            store
                .restore(snapshot)
                .map_err(|e| StateFileError::Corrupt {
                    path: path.to_path_buf(),
                    reason: e.0,
                })?;
            Ok(true)
        }
    }
}

/// Writes `snapshot` atomically (temp file, fsync, rename, fsync directory).
///
/// # Errors
/// [`StateFileError::Write`]; the old file is still intact then.
pub fn save(path: &Path, snapshot: &Snapshot) -> Result<(), StateFileError> {
    let werr = |source| StateFileError::Write {
        path: path.to_path_buf(),
        source,
    };
    let file = StateFile {
        format: FORMAT.to_string(),
        shared_data: snapshot.clone(),
    };
    let json = serde_json::to_vec_pretty(&file).map_err(|e| werr(std::io::Error::other(e)))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "state".into());
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(&json)?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(werr)
}

/// Saves `store` to `path` whenever it changes (debounced), until `stop` fires; then saves
/// once more. `changed` is `store.changed()`, taken by the caller before anything can write,
/// so no change is missed. Runs on a tokio runtime.
pub async fn save_on_change(
    path: PathBuf,
    store: Arc<SharedData>,
    mut changed: tokio::sync::watch::Receiver<u64>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            r = changed.changed() => if r.is_err() { break },
            _ = stop.wait_for(|s| *s) => break,
        }
        tokio::select! {
            _ = tokio::time::sleep(DEBOUNCE) => {}
            _ = stop.wait_for(|s| *s) => {}
        }
        changed.mark_unchanged();
        if let Err(e) = save(&path, &store.snapshot()) {
            tracing::error!("{e}");
        }
    }
    if let Err(e) = save(&path, &store.snapshot()) {
        tracing::error!("{e}");
    }
}
