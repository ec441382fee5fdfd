//! The parts of `deny.toml` this audit reads, as typed values.

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
    pub(crate) fn id(&self) -> &str {
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
