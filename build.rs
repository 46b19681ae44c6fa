//! Converts Tor's geoip tables into the compact form that `src/geoip`
//! embeds (format: src/geoip/mod.rs).
//!
//! Reads `geoip` and `geoip6` from `$SNOWFLAKE_GEOIP_DIR` (relative paths are
//! taken from the crate root), by default `build/geoip/usr/share/tor`, where
//! `make geoip` unpacks Debian's `tor-geoipdb`. Writes `geoip4.bin` and
//! `geoip6.bin` into `OUT_DIR`. If the files are missing or bad, it writes
//! empty tables and prints one warning: the broker still builds and every
//! country is `??`. Never panics.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

#[allow(dead_code)]
#[path = "src/geoip/parse.rs"]
mod parse;

const DEFAULT_DIR: &str = "build/geoip/usr/share/tor";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/geoip/parse.rs");
    println!("cargo:rerun-if-env-changed=SNOWFLAKE_GEOIP_DIR");

    let root = env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_default();
    let dir = match env::var_os("SNOWFLAKE_GEOIP_DIR") {
        Some(d) if !d.is_empty() => root.join(d),
        _ => root.join(DEFAULT_DIR),
    };
    let v4_path = dir.join("geoip");
    let v6_path = dir.join("geoip6");
    // While a file is missing cargo reruns this script on every build, so
    // the tables appear as soon as `make geoip` has fetched them.
    println!("cargo:rerun-if-changed={}", v4_path.display());
    println!("cargo:rerun-if-changed={}", v6_path.display());

    let (v4, v6) = match convert(&v4_path, &v6_path) {
        Ok(tables) => tables,
        Err(problem) => {
            println!(
                "cargo:warning=geoip: {problem}; building with EMPTY geoip tables, so client \
                 and proxy countries located by IP will be `??`. Run `make geoip` (unpacks \
                 Debian's tor-geoipdb into build/geoip) or set SNOWFLAKE_GEOIP_DIR to a \
                 directory holding Tor's `geoip` and `geoip6`."
            );
            (Vec::new(), Vec::new())
        }
    };

    let Some(out_dir) = env::var_os("OUT_DIR").map(PathBuf::from) else {
        println!("cargo:warning=geoip: OUT_DIR is not set; cannot write the tables");
        return;
    };
    for (name, bytes) in [("geoip4.bin", &v4), ("geoip6.bin", &v6)] {
        let path = out_dir.join(name);
        if let Err(e) = fs::write(&path, bytes) {
            println!("cargo:warning=geoip: cannot write {}: {e}", path.display());
        }
    }
}

/// Reads, parses and encodes both files; `Err` is a one-line reason.
fn convert(v4_path: &Path, v6_path: &Path) -> Result<(Vec<u8>, Vec<u8>), String> {
    let read =
        |p: &Path| fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
    let v4_text = read(v4_path)?;
    let v6_text = read(v6_path)?;
    let table = parse::parse_tor_geoip(&v4_text, &v6_text)?;
    if table.v4.is_empty() && table.v6.is_empty() {
        return Err(format!("no ranges in {}", v4_path.display()));
    }
    table.to_bytes()
}
