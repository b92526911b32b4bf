//! The layering of docs/architecture.md, checked: each layer's files name
//! only the layers below them (and commands never name each other), and
//! bollard is the engine layer's alone.

use std::path::{Path, PathBuf};

/// Layers from the bottom up, by their folder under `src/`.
const LAYERS: [&str; 7] = [
    "support", "recipe", "state", "engine", "instance", "api", "commands",
];

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

/// The source without its `#[cfg(test)]` module: tests may reach anywhere.
fn code_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    match text.find("#[cfg(test)]\nmod tests") {
        Some(end) => text[..end].to_owned(),
        None => text,
    }
}

/// A path as the repository names it.
fn shown(file: &Path) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    file.strip_prefix(root)
        .unwrap_or(file)
        .display()
        .to_string()
}

#[test]
fn each_layer_uses_only_the_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut wrong = Vec::new();
    for (rank, layer) in LAYERS.iter().enumerate() {
        for file in rust_files(&src.join(layer)) {
            let code = code_of(&file);
            for above in &LAYERS[rank + 1..] {
                if code.contains(&format!("crate::{above}")) {
                    wrong.push(format!("{} names `{above}`", shown(&file)));
                }
            }
            if *layer != "engine" && code.contains("bollard") {
                wrong.push(format!("{} names bollard", shown(&file)));
            }
        }
    }
    assert!(wrong.is_empty(), "layering broken:\n{}", wrong.join("\n"));
}

#[test]
fn no_command_uses_another() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/commands");
    let names: Vec<String> = rust_files(&dir)
        .iter()
        .filter_map(|f| f.file_stem()?.to_str().map(str::to_owned))
        .filter(|n| n != "mod")
        .collect();
    let mut wrong = Vec::new();
    for file in rust_files(&dir) {
        let code = code_of(&file);
        for name in &names {
            let refs = [format!("super::{name}::"), format!("commands::{name}::")];
            if refs.iter().any(|r| code.contains(r.as_str())) {
                wrong.push(format!("{} uses command `{name}`", shown(&file)));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
