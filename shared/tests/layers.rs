//! The layers of `shared/` (see `src/lib.rs`): a module may use only modules of its own layer or
//! a lower one. This reads the sources and fails naming each `crate::<module>` reference that
//! points upward, and each top-level module that has no layer yet (a new module must be placed).

use std::path::{Path, PathBuf};

/// Every top-level module of `shared/src` and its layer, as `src/lib.rs` lists them.
const LAYERS: &[(&str, u8)] = &[
    ("domain", 1),
    ("config", 1),
    ("batch", 2),
    ("credentials", 2),
    ("crypto", 2),
    ("db", 2),
    ("events", 2),
    ("health", 2),
    ("heartbeat", 2),
    ("idempotency", 2),
    ("jobs", 2),
    ("media", 2),
    ("notify", 2),
    ("outbound", 2),
    ("projections", 2),
    ("queue", 2),
    ("reach", 2),
    ("rate_limit", 2),
    ("retention", 2),
    ("shutdown", 2),
    ("telemetry", 2),
    ("views", 2),
    ("commands", 3),
    ("webhooks", 3),
    ("platforms", 4),
];

fn layer_of(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(name, _)| *name == module).map(|(_, layer)| *layer)
}

fn sources(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            sources(&path, found);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            found.push(path);
        }
    }
}

/// The code of a file without its comments and without its unit tests (which may use anything).
fn code_of(text: &str) -> String {
    let code = text.split("#[cfg(test)]").next().unwrap_or_default();
    code.lines().map(|line| if line.trim_start().starts_with("//") { "" } else { line }).collect::<Vec<_>>().join("\n")
}

/// The modules `code` names as `crate::<module>`.
fn references(code: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (number, line) in code.lines().enumerate() {
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            let name = if name == "Config" { "config".to_owned() } else { name };
            found.push((number + 1, name));
        }
    }
    found
}

#[test]
fn no_module_uses_a_higher_layer() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    let mut problems = Vec::new();
    for file in files {
        let relative = file.strip_prefix(&root).expect("under src");
        let Some(top) = relative.iter().next().and_then(|part| part.to_str()) else { continue };
        let top = top.trim_end_matches(".rs");
        if top == "lib" || top == "main" {
            continue;
        }
        let Some(own) = layer_of(top) else {
            problems.push(format!("{}: module `{top}` has no layer in this test", relative.display()));
            continue;
        };
        let text = std::fs::read_to_string(&file).expect("read source");
        for (line, used) in references(&code_of(&text)) {
            if let Some(theirs) = layer_of(&used)
                && theirs > own
            {
                problems.push(format!(
                    "{}:{line}: `{top}` (layer {own}) uses `{used}` (layer {theirs})",
                    relative.display()
                ));
            }
        }
    }
    assert!(problems.is_empty(), "layer violations:\n{}", problems.join("\n"));
}

#[test]
fn the_checker_sees_an_upward_reference() {
    let code = code_of("use crate::platforms::Platforms;\n// crate::commands in a comment\n");
    assert_eq!(references(&code), vec![(1, "platforms".to_owned())]);
}
