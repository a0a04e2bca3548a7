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

/// The plugin guide's complete validator is what `credbroker plugin new`
/// writes: each code block after a `<!-- plugin new ARGS: FILE -->` marker
/// appears, as it is, in FILE of the project those arguments make (whose
/// build and README commands `authoring.rs` runs).
#[test]
fn the_guides_examples_are_what_plugin_new_writes() {
    let guide = std::fs::read_to_string(root().join("docs/plugin-guide.md")).unwrap();
    let env = crate::harness::UserEnv::new();
    let mut checked = 0;
    for (at, _) in guide.match_indices("<!-- plugin new ") {
        let marker = &guide[at..guide[at..].find("-->").map(|end| at + end).unwrap()];
        let (args, file) = marker.trim_start_matches("<!-- plugin new ").rsplit_once(": ").unwrap();
        let block = guide[at..].split("```").nth(1).unwrap();
        let code = block.split_once('\n').unwrap().1;
        let dir = env.home().join(args.replace(' ', "_"));
        if !dir.exists() {
            let mut command = vec!["plugin", "new"];
            command.extend(args.split_whitespace());
            command.extend(["--dir", dir.to_str().unwrap()]);
            let run = env.run(&command);
            assert_eq!(run.code, Some(0), "{}", run.stderr);
        }
        let written = std::fs::read_to_string(dir.join(file.trim())).unwrap();
        assert!(written.contains(code), "the guide's block after `{marker}` is not in {file}:\n{code}");
        checked += 1;
    }
    assert_eq!(checked, 3, "the guide's marked examples");
}

/// Rust examples marked `<!-- compiled: PATH -->` in README.md and the plugin
/// guide are the SDK's own, which its doctests compile (`cargo test -p
/// credbroker-sdk --doc`): the block appears in PATH (in a `.rs` file, in its
/// `//!` documentation).
#[test]
fn the_docs_rust_examples_are_the_sdks_compiled_ones() {
    let mut checked = 0;
    for doc in ["README.md", "docs/plugin-guide.md"] {
        let text = std::fs::read_to_string(root().join(doc)).unwrap();
        for (at, _) in text.match_indices("<!-- compiled: ") {
            let path = text[at + "<!-- compiled: ".len()..].split(" -->").next().unwrap();
            let block = text[at..].split("```").nth(1).unwrap();
            let code = block.split_once('\n').unwrap().1;
            let source = std::fs::read_to_string(root().join(path)).unwrap();
            let source = if path.ends_with(".rs") {
                source
                    .lines()
                    .filter_map(|line| line.strip_prefix("//!"))
                    .map(|line| line.strip_prefix(' ').unwrap_or(line).to_string() + "\n")
                    .collect()
            } else {
                source
            };
            assert!(source.contains(code), "{doc}: the example marked `compiled: {path}` is not in {path}:\n{code}");
            checked += 1;
        }
    }
    assert_eq!(checked, 2, "the marked examples");
}

/// Every setting a bundled plugin reads by name is on its page (as `key` or
/// in a `key = ...` example).
/// The `.rs` files under `dir`, in its subdirectories too (a plugin's modules).
fn rust_sources(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(rust_sources(&path));
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
    files
}

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
        for source in rust_sources(&entry.path().join("src")) {
            let code = std::fs::read_to_string(&source).unwrap();
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
