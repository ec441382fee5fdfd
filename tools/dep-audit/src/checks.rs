//! The checks: licences, sources, bans, advisories; each returns findings.

use std::collections::{BTreeMap, BTreeSet};

use semver::VersionReq;

use crate::graph::Package;
use crate::policy::*;
use crate::{advisory, spdx};

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
