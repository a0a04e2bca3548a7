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
