//! `dep-audit`: the checks of our `deny.toml` (licences, bans, sources, advisories) run offline
//! and fast, for CI machines that can neither install cargo-deny in time (33 minutes of build on
//! 2 cores) nor reach github.com for the RustSec database.
//!
//! Same policy file as `cargo deny check`; what it reads from it:
//! - `[licenses] allow`, `exceptions` (`{ name, allow }`), `private.ignore`;
//! - `[bans] deny` (`{ name }`, optional `version`), `multiple-versions`, `wildcards`,
//!   `allow-wildcard-paths`;
//! - `[sources] unknown-registry`, `unknown-git`, `allow-registry`, `allow-git`;
//! - `[advisories] ignore` (ids, or `{ id, reason }`), `unmaintained`, `unsound`
//!   (`all` / `workspace` / `transitive` / `none`, cargo-deny's v2 scopes).
//!
//! Not done here: `yanked` (needs the crates.io index, online) and the licence text detection
//! behind `confidence-threshold`; `cargo deny check` does both where it can run.
//! Advisories come from the vendored snapshot in `deny/advisory-db/` (`deny/refresh-advisories`).

pub mod advisory;
pub mod spdx;

use std::collections::{BTreeMap, BTreeSet};

use semver::{Version, VersionReq};
use serde::Deserialize;

/// The parts of `deny.toml` this audit enforces (other keys are cargo-deny's alone).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Policy {
    /// `[advisories]`.
    #[serde(default)]
    pub advisories: AdvisoryPolicy,
    /// `[licenses]`.
    #[serde(default)]
    pub licenses: LicensePolicy,
    /// `[bans]`.
    #[serde(default)]
    pub bans: BanPolicy,
    /// `[sources]`.
    #[serde(default)]
    pub sources: SourcePolicy,
}

/// `[advisories]`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct AdvisoryPolicy {
    /// Advisories read and accepted.
    #[serde(default)]
    pub ignore: Vec<Ignore>,
    /// Scope of unmaintained advisories.
    #[serde(default)]
    pub unmaintained: Option<String>,
    /// Scope of unsound advisories.
    #[serde(default)]
    pub unsound: Option<String>,
}

/// One `ignore` entry: an id, or an id with the reason.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Ignore {
    /// `"RUSTSEC-…"`.
    Id(String),
    /// `{ id = "RUSTSEC-…", reason = "…" }`.
    WithReason {
        /// The advisory id.
        id: String,
    },
}

impl Ignore {
    fn id(&self) -> &str {
        match self {
            Ignore::Id(id) | Ignore::WithReason { id } => id,
        }
    }
}

/// `[licenses]`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct LicensePolicy {
    /// Licences every dependency must be satisfiable with.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Per-crate additions.
    #[serde(default)]
    pub exceptions: Vec<LicenseException>,
    /// `[licenses.private]`.
    #[serde(default)]
    pub private: Private,
}

/// `{ name, allow }`.
#[derive(Debug, Deserialize)]
pub struct LicenseException {
    /// The crate.
    pub name: String,
    /// Licences allowed for it in addition.
    pub allow: Vec<String>,
}

/// `[licenses.private]`.
#[derive(Debug, Default, Deserialize)]
pub struct Private {
    /// Skip unpublished workspace crates.
    #[serde(default)]
    pub ignore: bool,
}

/// `[bans]`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct BanPolicy {
    /// `deny` / `warn` / `allow` for two versions of one crate.
    #[serde(default)]
    pub multiple_versions: Option<String>,
    /// `deny` / `warn` / `allow` for `*` requirements in our manifests.
    #[serde(default)]
    pub wildcards: Option<String>,
    /// Path dependencies without a version are not wildcards.
    #[serde(default)]
    pub allow_wildcard_paths: bool,
    /// Crates that must not be in the graph.
    #[serde(default)]
    pub deny: Vec<Ban>,
}

/// `{ name, version? }`.
#[derive(Debug, Deserialize)]
pub struct Ban {
    /// The crate.
    pub name: String,
    /// Only these versions (all when absent).
    #[serde(default)]
    pub version: Option<String>,
}

/// `[sources]`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SourcePolicy {
    /// `deny` / `warn` / `allow`.
    #[serde(default)]
    pub unknown_registry: Option<String>,
    /// `deny` / `warn` / `allow`.
    #[serde(default)]
    pub unknown_git: Option<String>,
    /// Registry index URLs allowed.
    #[serde(default)]
    pub allow_registry: Vec<String>,
    /// Git URLs allowed.
    #[serde(default)]
    pub allow_git: Vec<String>,
}

/// Reads `deny.toml`.
///
/// # Errors
/// Not TOML, or a key above with the wrong type (the message names it).
pub fn parse_policy(text: &str) -> Result<Policy, toml::de::Error> {
    toml::from_str(text)
}

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

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Fails the audit.
    Error,
    /// Reported only.
    Warning,
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Error or warning.
    pub level: Level,
    /// `licenses`, `bans`, `sources` or `advisories`.
    pub check: &'static str,
    /// What, naming the crate and version.
    pub message: String,
}

fn finding(level: Level, check: &'static str, message: String) -> Finding {
    Finding {
        level,
        check,
        message,
    }
}

fn level_of(setting: Option<&str>, default: Level) -> Option<Level> {
    match setting {
        Some("deny") => Some(Level::Error),
        Some("warn") => Some(Level::Warning),
        Some("allow") => None,
        _ => Some(default),
    }
}

/// Licences: every package's expression must be satisfiable by the allow-list (plus its
/// exceptions). Returns the findings and how many packages were checked.
pub fn check_licenses(policy: &LicensePolicy, pkgs: &[Package]) -> (Vec<Finding>, usize) {
    let mut out = Vec::new();
    let mut checked = 0;
    for p in pkgs {
        if p.workspace && p.unpublished && policy.private.ignore {
            continue;
        }
        checked += 1;
        let mut allowed = policy.allow.clone();
        for e in policy.exceptions.iter().filter(|e| e.name == p.name) {
            allowed.extend(e.allow.iter().cloned());
        }
        let who = format!("{} {}", p.name, p.version);
        match (&p.license, &p.license_file) {
            (Some(expr), _) => match spdx::parse(expr) {
                Ok(e) if e.satisfied_by(&allowed) => {}
                Ok(_) => out.push(finding(
                    Level::Error,
                    "licenses",
                    format!("{who}: licence {expr:?} is not satisfiable by the allow-list"),
                )),
                Err(e) => out.push(finding(Level::Error, "licenses", format!("{who}: {e}"))),
            },
            (None, Some(file)) => out.push(finding(
                Level::Error,
                "licenses",
                format!("{who}: only a licence file ({file}); add an exception after reading it"),
            )),
            (None, None) => out.push(finding(
                Level::Error,
                "licenses",
                format!("{who}: no licence declared"),
            )),
        }
    }
    (out, checked)
}

/// Sources: registry packages only from allowed registries, git only from allowed repos.
pub fn check_sources(policy: &SourcePolicy, pkgs: &[Package]) -> Vec<Finding> {
    let mut out = Vec::new();
    for p in pkgs {
        let Some(src) = &p.source else { continue };
        let who = format!("{} {}", p.name, p.version);
        if let Some(url) = src
            .strip_prefix("registry+")
            .or_else(|| src.strip_prefix("sparse+"))
        {
            let known = policy.allow_registry.iter().any(|a| a == url)
                || (url == "https://index.crates.io/"
                    && policy
                        .allow_registry
                        .iter()
                        .any(|a| a == "https://github.com/rust-lang/crates.io-index"));
            if !known {
                if let Some(level) = level_of(policy.unknown_registry.as_deref(), Level::Warning) {
                    out.push(finding(
                        level,
                        "sources",
                        format!("{who}: registry {url} is not allowed"),
                    ));
                }
            }
        } else if let Some(url) = src.strip_prefix("git+") {
            let repo = url.split(['?', '#']).next().unwrap_or(url);
            if !policy.allow_git.iter().any(|a| a == repo) {
                if let Some(level) = level_of(policy.unknown_git.as_deref(), Level::Warning) {
                    out.push(finding(
                        level,
                        "sources",
                        format!("{who}: git source {repo} is not allowed"),
                    ));
                }
            }
        } else {
            out.push(finding(
                Level::Error,
                "sources",
                format!("{who}: unknown source {src}"),
            ));
        }
    }
    out
}

/// Bans: denied crates, wildcard requirements in our own manifests, duplicate versions.
pub fn check_bans(policy: &BanPolicy, pkgs: &[Package]) -> Vec<Finding> {
    let mut out = Vec::new();
    for ban in &policy.deny {
        let req = ban.version.as_deref().map(VersionReq::parse);
        for p in pkgs.iter().filter(|p| p.name == ban.name) {
            let hit = match &req {
                None => true,
                Some(Ok(r)) => r.matches(&p.version),
                Some(Err(e)) => {
                    out.push(finding(
                        Level::Error,
                        "bans",
                        format!("deny entry {}: version {:?}: {e}", ban.name, ban.version),
                    ));
                    false
                }
            };
            if hit {
                out.push(finding(
                    Level::Error,
                    "bans",
                    format!("{} {} is denied by [bans] deny", p.name, p.version),
                ));
            }
        }
    }
    if let Some(level) = level_of(policy.wildcards.as_deref(), Level::Warning) {
        for p in pkgs.iter().filter(|p| p.workspace) {
            for d in &p.deps {
                if d.req.trim() == "*" && !(d.path && policy.allow_wildcard_paths) {
                    out.push(finding(
                        level,
                        "bans",
                        format!("{}: dependency {} has a wildcard version", p.name, d.name),
                    ));
                }
            }
        }
    }
    if let Some(level) = level_of(policy.multiple_versions.as_deref(), Level::Warning) {
        let mut versions: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for p in pkgs {
            versions
                .entry(p.name.as_str())
                .or_default()
                .push(p.version.to_string());
        }
        for (name, vs) in versions.into_iter().filter(|(_, v)| v.len() > 1) {
            out.push(finding(
                level,
                "bans",
                format!(
                    "{name}: {} versions in the graph ({})",
                    vs.len(),
                    vs.join(", ")
                ),
            ));
        }
    }
    out
}

/// Whether `scope` (cargo-deny v2: `all`, `workspace`, `transitive`, `none`) covers `pkg`.
fn in_scope(scope: &str, pkg: &Package, direct: &BTreeSet<String>) -> bool {
    match scope {
        "all" => true,
        "workspace" => direct.contains(&pkg.name),
        "transitive" => !direct.contains(&pkg.name),
        _ => false,
    }
}

/// Advisories: a vulnerability affecting a locked version is an error; `unmaintained` and
/// `unsound` advisories are errors within their configured scope (cargo-deny v2), other
/// informational ones warnings; ignored ids are reported as warnings so they stay visible.
pub fn check_advisories(
    policy: &AdvisoryPolicy,
    pkgs: &[Package],
    advisories: &[advisory::Advisory],
) -> Vec<Finding> {
    let direct: BTreeSet<String> = pkgs
        .iter()
        .filter(|p| p.workspace)
        .flat_map(|p| p.deps.iter().map(|d| d.name.clone()))
        .collect();
    let ignored: BTreeSet<&str> = policy.ignore.iter().map(Ignore::id).collect();
    let mut out = Vec::new();
    for p in pkgs.iter().filter(|p| p.source.is_some()) {
        for a in advisories
            .iter()
            .filter(|a| a.package == p.name && a.affects(&p.version))
        {
            let kind = a.informational.as_deref().unwrap_or("vulnerability");
            let patched = if a.patched_text.is_empty() {
                "no patched version".to_string()
            } else {
                format!("patched: {}", a.patched_text.join(" | "))
            };
            let message = format!(
                "{} ({kind}): {} {} — {}; {patched}",
                a.id, p.name, p.version, a.title
            );
            let level = if ignored.contains(a.id.as_str()) {
                Some(Level::Warning)
            } else {
                match a.informational.as_deref() {
                    None => Some(Level::Error),
                    Some("unmaintained") => {
                        in_scope(policy.unmaintained.as_deref().unwrap_or("all"), p, &direct)
                            .then_some(Level::Error)
                    }
                    Some("unsound") => {
                        in_scope(policy.unsound.as_deref().unwrap_or("workspace"), p, &direct)
                            .then_some(Level::Error)
                    }
                    Some(_) => Some(Level::Warning),
                }
            };
            if let Some(level) = level {
                let message = if level == Level::Warning && ignored.contains(a.id.as_str()) {
                    format!("{message} (ignored in deny.toml)")
                } else {
                    message
                };
                out.push(finding(level, "advisories", message));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(name: &str, version: &str, license: &str, source: Option<&str>) -> Package {
        Package {
            name: name.into(),
            version: Version::parse(version).unwrap(),
            license: Some(license.into()),
            license_file: None,
            source: source.map(str::to_string),
            workspace: source.is_none(),
            unpublished: source.is_none(),
            deps: vec![],
        }
    }

    const CRATES_IO: &str = "registry+https://github.com/rust-lang/crates.io-index";

    fn policy() -> Policy {
        parse_policy(
            r#"
            [licenses]
            allow = ["MIT", "Apache-2.0"]
            [licenses.private]
            ignore = true
            [bans]
            multiple-versions = "warn"
            wildcards = "deny"
            allow-wildcard-paths = true
            deny = [{ name = "openssl" }]
            [sources]
            unknown-registry = "deny"
            unknown-git = "deny"
            allow-registry = ["https://github.com/rust-lang/crates.io-index"]
            [advisories]
            ignore = [{ id = "RUSTSEC-2000-0002", reason = "read it" }]
            "#,
        )
        .unwrap()
    }

    #[test]
    fn licences_outside_the_list_fail() {
        let p = policy();
        let pkgs = [
            pkg("ok", "1.0.0", "MIT OR Apache-2.0", Some(CRATES_IO)),
            pkg("gpl", "1.0.0", "GPL-3.0", Some(CRATES_IO)),
            pkg("ours", "0.1.0", "Proprietary", None),
        ];
        let (found, checked) = check_licenses(&p.licenses, &pkgs);
        assert_eq!(checked, 2, "the private workspace crate is skipped");
        assert_eq!(found.len(), 1);
        assert!(found[0].message.starts_with("gpl 1.0.0"));
    }

    #[test]
    fn a_denied_crate_and_a_git_source_are_caught() {
        let p = policy();
        let pkgs = [
            pkg("openssl", "0.10.0", "Apache-2.0", Some(CRATES_IO)),
            pkg(
                "forked",
                "0.1.0",
                "MIT",
                Some("git+https://github.com/x/forked?rev=abc#abc"),
            ),
            pkg(
                "other",
                "0.1.0",
                "MIT",
                Some("registry+https://example.com/index"),
            ),
            pkg("dup", "1.0.0", "MIT", Some(CRATES_IO)),
            pkg("dup", "2.0.0", "MIT", Some(CRATES_IO)),
        ];
        let bans = check_bans(&p.bans, &pkgs);
        assert!(bans
            .iter()
            .any(|f| f.level == Level::Error && f.message.contains("openssl")));
        assert!(bans
            .iter()
            .any(|f| f.level == Level::Warning && f.message.contains("dup: 2 versions")));
        let sources = check_sources(&p.sources, &pkgs);
        assert_eq!(sources.len(), 2, "{sources:?}");
        assert!(sources.iter().all(|f| f.level == Level::Error));
        assert!(sources
            .iter()
            .any(|f| f.message.contains("git source https://github.com/x/forked")));
    }

    #[test]
    fn wildcards_in_our_manifests() {
        let p = policy();
        let mut ours = pkg("ours", "0.1.0", "MIT", None);
        ours.deps = vec![
            Dependency {
                name: "sibling".into(),
                req: "*".into(),
                path: true,
            },
            Dependency {
                name: "serde".into(),
                req: "*".into(),
                path: false,
            },
        ];
        let found = check_bans(&p.bans, &[ours]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].message.contains("serde"));
    }

    #[test]
    fn advisories_by_kind_and_ignore() {
        let p = policy();
        let adv = |id: &str, info: Option<&str>, patched: &str| {
            let info = info.map_or(String::new(), |i| format!("informational = \"{i}\"\n"));
            advisory::parse(&format!(
                "```toml\n[advisory]\nid = \"{id}\"\npackage = \"dep\"\ndate = \"2020-01-01\"\n{info}\n[versions]\npatched = [{patched}]\n```\n# t\n"
            ))
            .unwrap()
        };
        let advisories = [
            adv("RUSTSEC-2000-0001", None, "\">= 1.2.0\""),
            adv("RUSTSEC-2000-0002", None, ""),
            adv("RUSTSEC-2000-0003", Some("unmaintained"), ""),
            adv("RUSTSEC-2000-0004", None, "\">= 1.0.0\""),
        ];
        let pkgs = [pkg("dep", "1.1.0", "MIT", Some(CRATES_IO))];
        let found = check_advisories(&p.advisories, &pkgs, &advisories);
        let level = |id: &str| {
            found
                .iter()
                .find(|f| f.message.starts_with(id))
                .map(|f| f.level)
        };
        assert_eq!(level("RUSTSEC-2000-0001"), Some(Level::Error));
        assert_eq!(level("RUSTSEC-2000-0002"), Some(Level::Warning), "ignored");
        assert_eq!(
            level("RUSTSEC-2000-0003"),
            Some(Level::Error),
            "unmaintained, scope all"
        );
        assert_eq!(level("RUSTSEC-2000-0004"), None, "patched");
    }
}
