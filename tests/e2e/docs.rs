//! The documentation stays true to the code it describes.

use crate::harness::root;

/// Every interface and function of the WIT appears in docs/wit-reference.md.
#[test]
fn the_wit_reference_covers_the_contract() {
    let wit = std::fs::read_to_string(root().join("wit/credbroker.wit")).unwrap();
    let reference = std::fs::read_to_string(root().join("docs/wit-reference.md")).unwrap();
    let mut missing = Vec::new();
    for line in wit.lines().map(str::trim) {
        let name = if let Some(rest) = line.strip_prefix("interface ") {
            rest.trim_end_matches('{').trim().to_string()
        } else if let Some((name, _)) = line.split_once(": func(") {
            name.trim().to_string()
        } else {
            continue;
        };
        if !reference.contains(&format!("`{name}`")) && !reference.contains(&format!(".{name}`")) {
            missing.push(name);
        }
    }
    assert!(missing.is_empty(), "docs/wit-reference.md does not mention: {missing:?}");
}

/// Every bundled plugin has a page.
#[test]
fn every_bundled_plugin_is_documented() {
    for entry in std::fs::read_dir(root().join("plugins")).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let page = root().join(format!("docs/plugins/{name}.md"));
        assert!(page.exists(), "docs/plugins/{name}.md is missing");
    }
}

/// Every setting a bundled plugin reads by name is on its page (as `key` or
/// in a `key = ...` example).
#[test]
fn every_setting_a_plugin_reads_is_documented() {
    let readers = [
        "config::get(",
        "config::require(",
        "config::parse_or(",
        "config::flag(",
        "non_empty(",
        "non_empty_setting(",
        "flow_setting(",
        "token_kind(",
        "setting(",
    ];
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(root().join("plugins")).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let page = std::fs::read_to_string(root().join(format!("docs/plugins/{name}.md"))).unwrap();
        for source in std::fs::read_dir(entry.path().join("src")).unwrap().flatten() {
            let code = std::fs::read_to_string(source.path()).unwrap();
            for reader in readers {
                for rest in code.split(&format!("{reader}\"")).skip(1) {
                    let key = rest.split('"').next().unwrap_or_default();
                    let is_name = !key.is_empty()
                        && key.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
                    if is_name && !page.contains(&format!("`{key}`")) && !page.contains(&format!("\n{key} = ")) {
                        missing.push(format!("{name}: {key}"));
                    }
                }
            }
        }
    }
    missing.sort();
    missing.dedup();
    assert!(missing.is_empty(), "settings not on their plugin's page: {missing:?}");
}
