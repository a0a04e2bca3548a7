//! The platforms other than the one the tests run on: the macOS build
//! type-checks, and every piece of platform-specific code is listed in
//! docs/platforms.md with what stands in its place elsewhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use crate::harness::{plugin_target_dir, root};

/// The platform configurations (`cfg(...)`, `cfg!(...)`, the condition of a
/// `cfg_attr(...)`) in one Rust source, normalised: those naming `unix`,
/// `windows` or a `target_os`.
fn platform_cfgs(source: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for opener in ["cfg(", "cfg!(", "cfg_attr("] {
        let mut rest = source;
        while let Some(at) = rest.find(opener) {
            // `cfg(` inside `cfg_attr(` or an identifier such as `mycfg(` is not one.
            let before = rest[..at].chars().next_back();
            rest = &rest[at + opener.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let mut depth = 1;
            let mut end = 0;
            let mut condition_end = None;
            for (i, c) in rest.char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    ',' if depth == 1 && opener == "cfg_attr(" && condition_end.is_none() => condition_end = Some(i),
                    _ => {}
                }
                if depth == 0 {
                    end = i;
                    break;
                }
            }
            let condition = &rest[..condition_end.unwrap_or(end)];
            let condition = condition.split_whitespace().collect::<Vec<_>>().join(" ");
            if ["unix", "windows", "target_os"].iter().any(|p| condition.contains(p)) {
                found.insert(condition);
            }
        }
    }
    found
}

/// `source` without its unit tests (the `mod tests` that ends a file):
/// tests that run on Unix only are not platform-specific code.
fn without_tests(source: &str) -> &str {
    let mut end = source.len();
    for marker in ["#[cfg(test)]\nmod tests", "#[cfg(all(test, unix))]\nmod tests"] {
        if let Some(at) = source.find(marker) {
            end = end.min(at);
        }
    }
    // A comment saying why the module is Unix-only sits just above it.
    &source[..end]
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// A backticked cell's content, or `None` for free text.
fn code(cell: &str) -> Option<String> {
    let cell = cell.trim();
    let inner = cell.strip_prefix('`')?;
    let (code, _) = inner.split_once('`')?;
    Some(code.to_string())
}

#[test]
fn every_platform_specific_item_is_listed_with_its_counterpart() {
    let mut in_code: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut files = Vec::new();
    rust_files(&root().join("host/src"), &mut files);
    rust_files(&root().join("src"), &mut files);
    for file in files {
        let cfgs = platform_cfgs(without_tests(&std::fs::read_to_string(&file).unwrap()));
        if !cfgs.is_empty() {
            let name = file.strip_prefix(root()).unwrap().display().to_string();
            in_code.insert(name, cfgs);
        }
    }
    let doc = std::fs::read_to_string(root().join("docs/platforms.md")).unwrap();
    let mut listed: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut problems = Vec::new();
    for row in doc.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = row.trim_matches('|').split('|').collect();
        let [file, only, counterpart, _what] = cells[..] else {
            problems.push(format!("a row without four cells: {row}"));
            continue;
        };
        let (Some(file), Some(only)) = (code(file), code(only)) else {
            problems.push(format!("a row whose file or configuration is not code: {row}"));
            continue;
        };
        let exists = in_code.get(&file).cloned().unwrap_or_default();
        let mut named = vec![only];
        // A counterpart is a configuration (which must exist too) or says why there is none.
        if let Some(counterpart) = code(counterpart) {
            named.push(counterpart);
        } else if counterpart.trim().is_empty() {
            problems.push(format!("a row that names no counterpart: {row}"));
        }
        for cfg in named {
            if !exists.contains(&cfg) {
                problems.push(format!("docs/platforms.md lists `{cfg}` in `{file}`, which has no such cfg"));
            }
            listed.entry(file.clone()).or_default().insert(cfg);
        }
    }
    for (file, cfgs) in &in_code {
        for cfg in cfgs {
            if !listed.get(file).is_some_and(|l| l.contains(cfg)) {
                problems.push(format!("`{file}` has `cfg({cfg})`, which docs/platforms.md does not list"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_macos_build_type_checks() {
    let target_dir = plugin_target_dir().parent().unwrap().to_path_buf();
    let mut check = Command::new(root().join("scripts/check-macos"));
    check.arg("--quiet").env("CHECK_MACOS_TARGETS", "aarch64-apple-darwin").env("CARGO_TARGET_DIR", &target_dir);
    for var in ["CARGO_ENCODED_RUSTFLAGS", "RUSTFLAGS", "CARGO_BUILD_TARGET"] {
        check.env_remove(var);
    }
    let output = check.output().expect("running scripts/check-macos");
    assert!(output.status.success(), "the macOS type check failed:\n{}", String::from_utf8_lossy(&output.stderr));
}
