//! Unit tests of the policy parser and the checks.

use semver::Version;

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
