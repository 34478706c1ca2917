//! Embeds the files of `web/` (the captions page and its assets) into harkd.
//!
//! The page is written separately from the daemon; until `web/captions.html` exists the
//! daemon serves nothing at `/captions`. Every file in `web/` except `README.md` and dotfiles
//! is served at `/<name>` (`/captions` serves `captions.html`).

use std::fmt::Write as _;
use std::path::Path;
use std::{env, fs};

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next().unwrap_or_default() {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn main() {
    let manifest = env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let web = Path::new(&manifest).join("web");
    println!("cargo:rerun-if-changed={}", web.display());
    let mut files = Vec::new();
    if let Ok(dir) = fs::read_dir(&web) {
        for entry in dir.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let plain = entry.file_type().is_ok_and(|t| t.is_file());
            if plain && !name.starts_with('.') && name != "README.md" {
                files.push((name, entry.path()));
            }
        }
    }
    files.sort();
    let mut code = String::from("/// Files of `web/`: (name, content type, bytes).\n");
    code.push_str("pub static ASSETS: &[(&str, &str, &[u8])] = &[\n");
    for (name, path) in &files {
        println!("cargo:rerun-if-changed={}", path.display());
        writeln!(
            code,
            "    ({name:?}, {:?}, include_bytes!({:?})),",
            content_type(name),
            path.display().to_string()
        )
        .expect("write to a String");
    }
    code.push_str("];\n");
    let out = Path::new(&env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("web_assets.rs");
    fs::write(out, code).expect("write web_assets.rs");
}
