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

/// Every declaration of the WIT carries a doc comment: interfaces, worlds,
/// types, functions, and every field and case. The SDK's docs are these (a
/// plugin author reads them in `cargo doc`), so none may be a guess.
#[test]
fn every_declaration_of_the_wit_is_documented() {
    let wit = std::fs::read_to_string(root().join("wit/credbroker.wit")).unwrap();
    let mut undocumented = Vec::new();
    let mut documented = false;
    for (number, line) in wit.lines().enumerate().map(|(i, l)| (i + 1, l.trim())) {
        if line.starts_with("///") {
            documented = true;
            continue;
        }
        if line.starts_with('@') {
            continue; // `@since` sits between a doc comment and its item
        }
        let declares = !(line.is_empty()
            || line.starts_with("//")
            || line == "}"
            || ["package ", "use ", "import ", "export ", "include "].iter().any(|p| line.starts_with(p)));
        if declares && !documented {
            undocumented.push(format!("{number}: {line}"));
        }
        documented = false;
    }
    assert!(undocumented.is_empty(), "wit/credbroker.wit: undocumented declarations:\n{}", undocumented.join("\n"));
}
