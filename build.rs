//! Embeds every `stdlib/<family>/<name>.loss` into the binary (see `src/stdlib.rs`).

use std::fs;
use std::path::Path;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("stdlib");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut entries = vec![];
    let mut families: Vec<_> = fs::read_dir(&root)
        .expect("stdlib/ exists")
        .flatten()
        .collect();
    families.sort_by_key(|e| e.file_name());
    for family in families {
        let path = family.path();
        if !path.is_dir() || family.file_name() == "fixtures" {
            continue;
        }
        println!("cargo:rerun-if-changed={}", path.display());
        let mut files: Vec<_> = fs::read_dir(&path)
            .expect("family folder")
            .flatten()
            .collect();
        files.sort_by_key(|e| e.file_name());
        for f in files {
            let p = f.path();
            if p.extension().is_some_and(|e| e == "loss") {
                println!("cargo:rerun-if-changed={}", p.display());
                let name = p.file_stem().unwrap().to_string_lossy().into_owned();
                let fam = family.file_name().to_string_lossy().into_owned();
                entries.push(format!(
                    "    StdlibEntry {{ family: {fam:?}, name: {name:?}, source: include_str!({:?}) }},\n",
                    p.display().to_string()
                ));
            }
        }
    }
    let out = Path::new(&std::env::var("OUT_DIR").unwrap()).join("stdlib_table.rs");
    fs::write(out, format!("&[\n{}]\n", entries.concat())).unwrap();
}
