//! RustSec advisories: the Markdown files of <https://github.com/rustsec/advisory-db> (a TOML
//! front matter in a ```` ```toml ```` fence, then the text), and whether a locked version is
//! affected.

use semver::{Version, VersionReq};
use serde::Deserialize;

/// One advisory, as far as the audit needs it.
#[derive(Debug, Clone)]
pub struct Advisory {
    /// `RUSTSEC-YYYY-NNNN`.
    pub id: String,
    /// The crate it is about.
    pub package: String,
    /// The Markdown title (first `# ` line), or the id.
    pub title: String,
    /// `unmaintained`, `unsound`, `notice`… ; `None` for a vulnerability.
    pub informational: Option<String>,
    /// Withdrawn advisories are kept upstream but mean nothing.
    pub withdrawn: bool,
    /// Versions that are fixed.
    pub patched: Vec<VersionReq>,
    /// Versions that never had the problem.
    pub unaffected: Vec<VersionReq>,
    /// The `patched` requirements as written, for the report.
    pub patched_text: Vec<String>,
}

#[derive(Deserialize)]
struct FrontMatter {
    advisory: Meta,
    #[serde(default)]
    versions: Versions,
}

#[derive(Deserialize)]
struct Meta {
    id: String,
    package: String,
    #[serde(default)]
    informational: Option<String>,
    #[serde(default)]
    withdrawn: Option<toml::Value>,
}

#[derive(Deserialize, Default)]
struct Versions {
    #[serde(default)]
    patched: Vec<String>,
    #[serde(default)]
    unaffected: Vec<String>,
}

/// Why an advisory file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum AdvisoryError {
    /// No ```` ```toml ```` front matter.
    #[error("no ```toml front matter")]
    NoFrontMatter,
    /// The front matter is not the expected TOML.
    #[error("front matter: {0}")]
    Toml(#[from] toml::de::Error),
    /// A version requirement that semver cannot read.
    #[error("version requirement {req:?}: {source}")]
    Req {
        /// The requirement as written.
        req: String,
        /// semver's complaint.
        source: semver::Error,
    },
}

fn reqs(list: &[String]) -> Result<Vec<VersionReq>, AdvisoryError> {
    list.iter()
        .map(|r| {
            VersionReq::parse(r).map_err(|source| AdvisoryError::Req {
                req: r.clone(),
                source,
            })
        })
        .collect()
}

/// Parses one advisory file.
///
/// # Errors
/// A file without a TOML front matter, or one that does not parse.
pub fn parse(text: &str) -> Result<Advisory, AdvisoryError> {
    let body = text
        .trim_start()
        .strip_prefix("```toml")
        .ok_or(AdvisoryError::NoFrontMatter)?;
    let end = body.find("\n```").ok_or(AdvisoryError::NoFrontMatter)?;
    let (front, rest) = body.split_at(end);
    let fm: FrontMatter = toml::from_str(front)?;
    let title = rest
        .lines()
        .find_map(|l| l.strip_prefix("# "))
        .map_or_else(|| fm.advisory.id.clone(), |t| t.trim().to_string());
    Ok(Advisory {
        patched: reqs(&fm.versions.patched)?,
        unaffected: reqs(&fm.versions.unaffected)?,
        patched_text: fm.versions.patched,
        id: fm.advisory.id,
        package: fm.advisory.package,
        title,
        informational: fm.advisory.informational,
        withdrawn: fm.advisory.withdrawn.is_some(),
    })
}

impl Advisory {
    /// True when `version` is covered: not withdrawn, and neither patched nor unaffected. An
    /// advisory without any patched version (an unmaintained crate) covers every version.
    pub fn affects(&self, version: &Version) -> bool {
        !self.withdrawn
            && !self
                .patched
                .iter()
                .chain(&self.unaffected)
                .any(|r| r.matches(version))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKIO: &str = r#"```toml
[advisory]
id = "RUSTSEC-2021-0072"
package = "tokio"
date = "2021-07-07"

[affected]
functions = { "tokio::task::JoinHandle::abort" = ["<= 1.8.0, >= 0.3.0"] }

[versions]
patched = [">= 1.5.1, < 1.6.0", ">= 1.8.1"]
unaffected = ["< 0.3.0"]
```

# Task dropped in wrong thread when aborting `LocalSet` task

text
"#;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn affected_patched_and_unaffected_versions() {
        let a = parse(TOKIO).unwrap();
        assert_eq!(a.id, "RUSTSEC-2021-0072");
        assert_eq!(a.package, "tokio");
        assert_eq!(
            a.title,
            "Task dropped in wrong thread when aborting `LocalSet` task"
        );
        assert!(a.informational.is_none());
        assert!(a.affects(&v("1.8.0")));
        assert!(a.affects(&v("1.0.0")));
        assert!(!a.affects(&v("1.5.2")), "patched range");
        assert!(!a.affects(&v("1.54.1")), "patched");
        assert!(!a.affects(&v("0.2.25")), "unaffected");
    }

    #[test]
    fn withdrawn_and_unmaintained() {
        let withdrawn = TOKIO.replace(
            "date = \"2021-07-07\"",
            "date = \"2021-07-07\"\nwithdrawn = \"2021-08-01\"",
        );
        assert!(!parse(&withdrawn).unwrap().affects(&v("1.8.0")));
        let unmaintained = "```toml\n[advisory]\nid = \"RUSTSEC-2020-0001\"\npackage = \"x\"\n\
                            date = \"2020-01-01\"\ninformational = \"unmaintained\"\n\n\
                            [versions]\npatched = []\n```\n\n# x is unmaintained\n";
        let a = parse(unmaintained).unwrap();
        assert_eq!(a.informational.as_deref(), Some("unmaintained"));
        assert!(a.affects(&v("0.1.0")) && a.affects(&v("9.9.9")));
    }

    #[test]
    fn bad_files_are_errors() {
        assert!(matches!(
            parse("# no front matter"),
            Err(AdvisoryError::NoFrontMatter)
        ));
        assert!(parse("```toml\n[advisory]\nid = 1\n```\n").is_err());
        let bad_req = TOKIO.replace(">= 1.8.1", ">= one");
        assert!(matches!(parse(&bad_req), Err(AdvisoryError::Req { .. })));
    }
}
