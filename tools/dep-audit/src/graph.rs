//! The dependency graph, from `cargo metadata`'s JSON.

use std::collections::BTreeSet;

use semver::Version;

/// One package of the resolved graph (`cargo metadata`).
#[derive(Debug, Clone)]
pub struct Package {
    /// Crate name.
    pub name: String,
    /// Locked version.
    pub version: Version,
    /// SPDX expression.
    pub license: Option<String>,
    /// `license-file`, when there is no expression.
    pub license_file: Option<String>,
    /// `registry+URL`, `git+URL`, or `None` for path (workspace) crates.
    pub source: Option<String>,
    /// A member of our workspace.
    pub workspace: bool,
    /// `publish = false`.
    pub unpublished: bool,
    /// Declared dependencies (for the wildcard check and direct-dependency scopes).
    pub deps: Vec<Dependency>,
}

/// A declared dependency.
#[derive(Debug, Clone)]
pub struct Dependency {
    /// Crate name.
    pub name: String,
    /// Version requirement as written (`*` for none).
    pub req: String,
    /// A `path = …` dependency.
    pub path: bool,
}

/// Why the graph could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cargo metadata output: {0}")]
pub struct GraphError(String);

fn text(v: &serde_json::Value, key: &str) -> Option<String> {
    v.get(key).and_then(|x| x.as_str()).map(str::to_string)
}

/// Reads the packages out of `cargo metadata --format-version 1` JSON.
///
/// # Errors
/// Missing `packages`, a package without name or a version semver cannot read.
pub fn packages(metadata: &serde_json::Value) -> Result<Vec<Package>, GraphError> {
    let members: BTreeSet<&str> = metadata
        .get("workspace_members")
        .and_then(|m| m.as_array())
        .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
        .unwrap_or_default();
    let list = metadata
        .get("packages")
        .and_then(|p| p.as_array())
        .ok_or_else(|| GraphError("no `packages` array".into()))?;
    list.iter()
        .map(|p| {
            let name = text(p, "name").ok_or_else(|| GraphError("a package has no name".into()))?;
            let version = text(p, "version")
                .and_then(|v| Version::parse(&v).ok())
                .ok_or_else(|| GraphError(format!("package {name}: no valid version")))?;
            let id = text(p, "id").unwrap_or_default();
            let deps = p
                .get("dependencies")
                .and_then(|d| d.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|d| {
                            Some(Dependency {
                                name: text(d, "name")?,
                                req: text(d, "req").unwrap_or_else(|| "*".into()),
                                path: d.get("path").is_some_and(|x| x.is_string()),
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            Ok(Package {
                license: text(p, "license"),
                license_file: text(p, "license_file"),
                source: text(p, "source"),
                workspace: members.contains(id.as_str()),
                unpublished: p
                    .get("publish")
                    .and_then(|x| x.as_array())
                    .is_some_and(|a| a.is_empty()),
                deps,
                name,
                version,
            })
        })
        .collect()
}
