//! The settings are written once, in `config::SETTINGS`. The README's
//! settings table and `wrangler.toml`'s `[vars]` are checked against it, so
//! an operator reading either sees what the code does.

// Tests report a failure by panicking (the `[lints]` table refuses it elsewhere).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use snowflake_broker::config::{Config, DefaultValue, Setting, SETTINGS};
use std::collections::BTreeMap;

fn read(name: &str) -> String {
    let path = format!("{}/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The README row this setting should have.
fn row(s: &Setting) -> String {
    let default = match s.default {
        DefaultValue::Value(v) => format!("`{v}`"),
        DefaultValue::Unset => "unset".to_string(),
        DefaultValue::BuiltIn(what) => what.to_string(),
    };
    let meaning = match s.range {
        Some((min, max)) => format!("{} ({min}–{max})", s.meaning),
        None => s.meaning.to_string(),
    };
    format!("| `{}` | {default} | {meaning} |", s.name)
}

#[test]
fn readme_settings_table_is_the_settings_table() {
    let readme = read("README.md");
    let section = readme
        .split("\n## Settings\n")
        .nth(1)
        .expect("README has a Settings section");
    let rows: Vec<&str> = section
        .lines()
        .skip_while(|l| !l.starts_with("| name |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .collect();
    let want: Vec<String> = SETTINGS.iter().map(row).collect();
    assert_eq!(
        rows,
        want,
        "README.md's settings table differs from config::SETTINGS; it should read:\n{}",
        want.join("\n")
    );
}

#[test]
fn wrangler_vars_are_the_defaults() {
    let manifest: toml::Table = read("wrangler.toml").parse().unwrap();
    let vars: BTreeMap<String, String> = manifest
        .get("vars")
        .and_then(|v| v.as_table())
        .expect("wrangler.toml has [vars]")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("vars are strings").to_string()))
        .collect();
    let want: BTreeMap<String, String> = SETTINGS
        .iter()
        .filter_map(|s| match s.default {
            DefaultValue::Value(v) => Some((s.name.to_string(), v.to_string())),
            _ => None,
        })
        .collect();
    assert_eq!(vars, want);
}

#[test]
fn every_default_parses_and_is_in_range() {
    let config = Config::from_lookup(|_| None).unwrap();
    for s in SETTINGS {
        if let (DefaultValue::Value(v), Some((min, max))) = (s.default, s.range) {
            let n: u64 = v.parse().unwrap();
            assert!((min..=max).contains(&n), "{}", s.name);
        }
        // Setting each default explicitly changes nothing.
        if let DefaultValue::Value(v) = s.default {
            let explicit = Config::from_lookup(|k| (k == s.name).then(|| v.to_string())).unwrap();
            assert_eq!(format!("{explicit:?}"), format!("{config:?}"), "{}", s.name);
        }
    }
}
