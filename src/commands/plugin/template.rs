//! What `credbroker plugin new` writes: a ready plugin project for one world,
//! in Rust (a crate depending on credbroker-sdk) or Python (a componentize-py
//! project), from the templates in `templates/`.
//!
//! The contract a Python project builds against is the one this binary was
//! built with (`wit/credbroker.wit`, embedded): there is one source of it.

use std::fmt;
use std::path::{Path, PathBuf};

use credbroker_host::contract;

/// The SDK version the Rust templates depend on: guest-sdk's (a test keeps
/// them equal), which speaks the contract this binary speaks.
pub const SDK_VERSION: &str = "0.1.5";

/// The contract, for Python projects (componentize-py builds against it).
const WIT: &str = include_str!("../../../wit/credbroker.wit");
/// componentize-py, pinned as plugins-python/ pins it.
const PYTHON_REQUIREMENTS: &str = include_str!("../../../plugins-python/requirements.txt");

/// What the plugin is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// A credential provider, run by `credbroker get`.
    Provider,
    /// A token validator, run by `credbroker serve`.
    Validator,
    /// A login backend, run by `credbroker serve` for password logins.
    Login,
}

impl Kind {
    /// The world's name in the contract.
    pub fn world(self) -> &'static str {
        match self {
            Self::Provider => "provider",
            Self::Validator => "validator",
            Self::Login => "login",
        }
    }

    /// How a person calls it.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Provider => "provider",
            Self::Validator => "validator",
            Self::Login => "login backend",
        }
    }
}

/// The language of the project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// A Rust crate using credbroker-sdk, built with cargo.
    Rust,
    /// A Python project built with componentize-py.
    Python,
}

impl fmt::Display for Lang {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Rust => "Rust",
            Self::Python => "Python",
        })
    }
}

/// Why a name cannot be a plugin's.
#[derive(Debug, thiserror::Error)]
pub enum NameError {
    /// Empty, too long, or with characters other than `a-z`, `0-9` and `-`.
    #[error(
        "`{0}` cannot name a plugin: use 1 to 64 lowercase letters, digits and single `-` between them, \
         starting with a letter (e.g. corp-tokens)"
    )]
    Malformed(String),
    /// A name cargo, Rust or some file systems reserve.
    #[error("`{0}` is reserved (by Rust, cargo, credbroker or Windows file names); choose another name")]
    Reserved(String),
}

/// Rust keywords, crates of the standard distribution, names Windows keeps
/// for devices, and credbroker's own crates: cargo or a file system refuses
/// them, or they would shadow what the plugin builds on.
const RESERVED: &[&str] = &[
    "abstract",
    "alloc",
    "as",
    "async",
    "await",
    "become",
    "box",
    "break",
    "const",
    "continue",
    "core",
    "crate",
    "do",
    "dyn",
    "else",
    "enum",
    "extern",
    "false",
    "final",
    "fn",
    "for",
    "gen",
    "if",
    "impl",
    "in",
    "let",
    "loop",
    "macro",
    "match",
    "mod",
    "move",
    "mut",
    "override",
    "priv",
    "proc-macro",
    "pub",
    "ref",
    "return",
    "self",
    "static",
    "std",
    "struct",
    "super",
    "test",
    "trait",
    "true",
    "try",
    "type",
    "typeof",
    "unsafe",
    "unsized",
    "use",
    "virtual",
    "where",
    "while",
    "yield",
    "con",
    "prn",
    "aux",
    "nul",
    "com1",
    "com2",
    "com3",
    "com4",
    "com5",
    "com6",
    "com7",
    "com8",
    "com9",
    "lpt1",
    "lpt2",
    "lpt3",
    "lpt4",
    "lpt5",
    "lpt6",
    "lpt7",
    "lpt8",
    "lpt9",
    "credbroker",
    "credbroker-sdk",
    "credbroker-host",
];

/// Check `name` as a plugin name: it becomes the crate's (or the Python
/// component's) name and its file name.
///
/// # Errors
///
/// [`NameError`] saying what a name may be.
pub fn check_name(name: &str) -> Result<(), NameError> {
    let well_formed = (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && !name.contains("--")
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !well_formed {
        return Err(NameError::Malformed(name.to_string()));
    }
    if RESERVED.contains(&name) {
        return Err(NameError::Reserved(name.to_string()));
    }
    Ok(())
}

/// A local credbroker-sdk to build against (a checkout's `guest-sdk/` or an
/// unpacked `.crate`), until it is on crates.io.
#[derive(Debug)]
pub struct LocalSdk {
    /// Its directory, absolute.
    pub dir: PathBuf,
    /// Its version.
    pub version: String,
}

/// Why a local SDK cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SdkError {
    /// The directory has no readable Cargo.toml.
    #[error("cannot read {path}: {error}; --sdk names the directory of credbroker-sdk (its Cargo.toml)")]
    Unreadable {
        /// The manifest.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The manifest is not credbroker-sdk's.
    #[error("{path} is not credbroker-sdk's manifest ({why})")]
    NotTheSdk {
        /// The manifest.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The SDK is older than the templates need, or on another track.
    #[error(
        "{path} is credbroker-sdk {found}; plugins this credbroker writes need {SDK_VERSION} or later on the \
         same track"
    )]
    Incompatible {
        /// The manifest.
        path: PathBuf,
        /// Its version.
        found: String,
    },
}

impl LocalSdk {
    /// The SDK in `dir`, checked.
    ///
    /// # Errors
    ///
    /// [`SdkError`] when it is missing, not the SDK, or too old.
    pub fn at(dir: &Path) -> Result<Self, SdkError> {
        let path = dir.join("Cargo.toml");
        let unreadable = |error| SdkError::Unreadable { path: path.clone(), error };
        let text = std::fs::read_to_string(&path).map_err(unreadable)?;
        let not_the_sdk = |why: String| SdkError::NotTheSdk { path: path.clone(), why };
        let manifest: toml::Table = text.parse().map_err(|e: toml::de::Error| not_the_sdk(e.message().to_string()))?;
        let package = manifest.get("package").and_then(toml::Value::as_table);
        let name = package.and_then(|p| p.get("name")).and_then(toml::Value::as_str);
        if name != Some("credbroker-sdk") {
            return Err(not_the_sdk(format!(
                "its package is {}",
                name.map_or("not named".into(), |n| format!("`{n}`"))
            )));
        }
        let version = package
            .and_then(|p| p.get("version"))
            .and_then(toml::Value::as_str)
            .ok_or_else(|| not_the_sdk("it has no explicit version".into()))?
            .to_string();
        if !serves(&version, SDK_VERSION) {
            return Err(SdkError::Incompatible { path, found: version });
        }
        let dir = std::fs::canonicalize(dir).map_err(unreadable)?;
        Ok(Self { dir, version })
    }
}

/// Whether SDK `version` offers what `needed` does: the same track
/// (`MAJOR.MINOR` while the major is 0, else `MAJOR`), not older.
fn serves(version: &str, needed: &str) -> bool {
    let (Ok(have), Ok(need)) = (semver::Version::parse(version), semver::Version::parse(needed)) else {
        return false;
    };
    let same_track = have.major == need.major && (need.major != 0 || have.minor == need.minor);
    same_track && have >= need
}

/// One file of a project.
#[derive(Debug, PartialEq, Eq)]
pub struct File {
    /// Where, relative to the project directory.
    pub path: PathBuf,
    /// What.
    pub content: String,
    /// Whether it is a script to run.
    pub executable: bool,
}

/// What a project is made from.
pub struct Spec<'a> {
    /// The plugin's name (checked with [`check_name`]).
    pub name: &'a str,
    /// Its world.
    pub kind: Kind,
    /// Its language.
    pub lang: Lang,
    /// A local SDK to build against (Rust).
    pub sdk: Option<&'a LocalSdk>,
}

impl Spec<'_> {
    /// The crate's library name (`corp-tokens` → `corp_tokens`).
    fn crate_name(&self) -> String {
        self.name.replace('-', "_")
    }

    /// The component the build writes, relative to the project.
    pub fn wasm(&self) -> String {
        match self.lang {
            Lang::Rust => format!("target/wasm32-wasip2/release/{}.wasm", self.crate_name()),
            Lang::Python => format!("{}.wasm", self.name),
        }
    }

    /// The plugin's type in Rust (`corp-tokens` → `CorpTokens`), or with
    /// `Plugin` after it when the template already uses that name.
    fn type_name(&self, template: &str) -> String {
        let camel: String = self
            .name
            .split('-')
            .map(|word| {
                let mut chars = word.chars();
                chars.next().map(|first| first.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
            })
            .collect();
        let used = template.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).any(|word| word == camel);
        if used { format!("{camel}Plugin") } else { camel }
    }
}

/// A template's text, by path under `templates/`.
fn template(path: &str) -> &'static str {
    match path {
        "rust/Cargo.toml" => include_str!("templates/rust/Cargo.toml"),
        "rust/README.md" => include_str!("templates/rust/README.md"),
        "rust/gitignore" => include_str!("templates/rust/gitignore"),
        "rust/provider.rs" => include_str!("templates/rust/provider.rs"),
        "rust/validator.rs" => include_str!("templates/rust/validator.rs"),
        "rust/login.rs" => include_str!("templates/rust/login.rs"),
        "python/README.md" => include_str!("templates/python/README.md"),
        "python/gitignore" => include_str!("templates/python/gitignore"),
        "python/build" => include_str!("templates/python/build"),
        "python/failure.py" => include_str!("templates/python/failure.py"),
        "python/glue.py" => include_str!("templates/python/glue.py"),
        "python/provider_app.py" => include_str!("templates/python/provider_app.py"),
        "python/provider_logic.py" => include_str!("templates/python/provider_logic.py"),
        "python/provider_test.py" => include_str!("templates/python/provider_test.py"),
        "python/validator_app.py" => include_str!("templates/python/validator_app.py"),
        "python/validator_logic.py" => include_str!("templates/python/validator_logic.py"),
        "python/validator_test.py" => include_str!("templates/python/validator_test.py"),
        "python/login_app.py" => include_str!("templates/python/login_app.py"),
        "python/login_logic.py" => include_str!("templates/python/login_logic.py"),
        "python/login_test.py" => include_str!("templates/python/login_test.py"),
        "run/provider.md" => include_str!("templates/run/provider.md"),
        "run/validator.md" => include_str!("templates/run/validator.md"),
        "run/login.md" => include_str!("templates/run/login.md"),
        other => unreachable!("no template {other}"),
    }
}

/// Fill `{{key}}` placeholders.
fn fill(text: &str, values: &[(&str, &str)]) -> String {
    let mut out = text.to_string();
    for (key, value) in values {
        out = out.replace(&format!("{{{{{key}}}}}"), value);
    }
    debug_assert!(!out.contains("{{"), "a placeholder is left: {out}");
    out
}

/// A TOML basic string holding `text`.
fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

/// The project's files.
pub fn render(spec: &Spec<'_>) -> Vec<File> {
    let world = spec.kind.world();
    let code_template = match spec.lang {
        Lang::Rust => template(&format!("rust/{world}.rs")),
        Lang::Python => template(&format!("python/{world}_app.py")),
    };
    let type_name = spec.type_name(code_template);
    let crate_name = spec.crate_name();
    let wasm = spec.wasm();
    let (sdk_patch, sdk_note) = match spec.sdk {
        Some(sdk) => (
            format!(
                "\n# Until credbroker-sdk is on crates.io, cargo takes it from a local copy\n\
                 # (written by `credbroker plugin new --sdk`); delete this once it is published.\n\
                 [patch.crates-io]\ncredbroker-sdk = {{ path = {} }}\n",
                toml_string(&sdk.dir.display().to_string())
            ),
            format!(
                "Until it is on crates.io, `[patch.crates-io]` in Cargo.toml takes credbroker-sdk {} from\n\
                 `{}`.\n",
                sdk.version,
                sdk.dir.display()
            ),
        ),
        None => (
            String::new(),
            format!(
                "To build against a local copy of the SDK (a credbroker checkout's `guest-sdk/`,\n\
                 or an unpacked `credbroker-sdk-{SDK_VERSION}.crate`), add to Cargo.toml:\n\n\
                 ```toml\n[patch.crates-io]\ncredbroker-sdk = {{ path = \"/path/to/credbroker-sdk\" }}\n```\n"
            ),
        ),
    };
    let values: Vec<(&str, &str)> = vec![
        ("name", spec.name),
        ("world", world),
        ("kind", spec.kind.describe()),
        ("type_name", &type_name),
        ("crate_name", &crate_name),
        ("wasm", &wasm),
        ("sdk_version", SDK_VERSION),
        ("contract", contract::VERSION),
        ("sdk_patch", &sdk_patch),
        ("sdk_note", &sdk_note),
    ];
    let run = fill(template(&format!("run/{world}.md")), &values);
    let mut values = values;
    values.push(("run", &run));
    let file = |path: &str, content: String| File { path: PathBuf::from(path), content, executable: false };
    match spec.lang {
        Lang::Rust => vec![
            file("Cargo.toml", fill(template("rust/Cargo.toml"), &values)),
            file("src/lib.rs", fill(code_template, &values)),
            file("README.md", fill(template("rust/README.md"), &values)),
            file(".gitignore", fill(template("rust/gitignore"), &values)),
        ],
        Lang::Python => vec![
            file("app.py", fill(code_template, &values)),
            file("logic.py", fill(template(&format!("python/{world}_logic.py")), &values)),
            file("test_logic.py", fill(template(&format!("python/{world}_test.py")), &values)),
            file("failure.py", fill(template("python/failure.py"), &values)),
            file("glue.py", fill(template("python/glue.py"), &values)),
            File { executable: true, ..file("build", fill(template("python/build"), &values)) },
            file("requirements.txt", PYTHON_REQUIREMENTS.to_string()),
            file("wit/credbroker.wit", WIT.to_string()),
            file("README.md", fill(template("python/README.md"), &values)),
            file(".gitignore", fill(template("python/gitignore"), &values)),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_crate_and_file_names() {
        for good in ["corp-tokens", "a", "vault2", "my-2fa", &"x".repeat(64)] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Corp", "2fa", "-x", "x-", "a--b", "a_b", "a.b", "a/b", "../x", "é", &"x".repeat(65)] {
            assert!(matches!(check_name(bad), Err(NameError::Malformed(_))), "{bad}");
        }
        for reserved in ["test", "self", "std", "nul", "credbroker-sdk"] {
            assert!(matches!(check_name(reserved), Err(NameError::Reserved(_))), "{reserved}");
        }
    }

    #[test]
    fn the_sdk_version_is_guest_sdks() {
        let manifest = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/guest-sdk/Cargo.toml")).unwrap();
        let manifest: toml::Table = manifest.parse().unwrap();
        assert_eq!(manifest["package"]["version"].as_str(), Some(SDK_VERSION));
    }

    #[test]
    fn sdk_versions_serve_their_track() {
        assert!(serves("0.1.3", "0.1.3"));
        assert!(serves("0.1.9", "0.1.3"));
        assert!(!serves("0.1.2", "0.1.3"));
        assert!(!serves("0.2.0", "0.1.3"));
        assert!(serves("1.4.0", "1.2.0"));
        assert!(!serves("2.0.0", "1.2.0"));
        assert!(!serves("not-a-version", "0.1.3"));
    }

    #[test]
    fn type_names_avoid_the_templates_names() {
        let spec = |name| Spec { name, kind: Kind::Login, lang: Lang::Rust, sdk: None };
        let login = template("rust/login.rs");
        assert_eq!(spec("corp-directory").type_name(login), "CorpDirectory");
        assert_eq!(spec("user").type_name(login), "UserPlugin", "the template has a `User`");
        assert_eq!(spec("login").type_name(login), "LoginPlugin", "the template uses the `Login` trait");
    }

    #[test]
    fn every_placeholder_is_filled_and_paths_are_quoted_for_toml() {
        let sdk = LocalSdk { dir: PathBuf::from(r#"/tmp/a "quoted" \ dir"#), version: SDK_VERSION.into() };
        for lang in [Lang::Rust, Lang::Python] {
            for kind in [Kind::Provider, Kind::Validator, Kind::Login] {
                let sdk = (lang == Lang::Rust).then_some(&sdk);
                for file in render(&Spec { name: "corp-tokens", kind, lang, sdk }) {
                    assert!(!file.content.contains("{{"), "{lang} {kind:?} {}", file.path.display());
                }
            }
        }
        let files = render(&Spec { name: "corp-tokens", kind: Kind::Provider, lang: Lang::Rust, sdk: Some(&sdk) });
        let manifest: toml::Table = files[0].content.parse().expect("Cargo.toml is TOML");
        assert_eq!(manifest["patch"]["crates-io"]["credbroker-sdk"]["path"].as_str(), Some(r#"/tmp/a "quoted" \ dir"#));
        assert_eq!(manifest["dependencies"]["credbroker-sdk"].as_str(), Some(SDK_VERSION));
    }
}
