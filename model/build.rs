//! Embed the demonstration model (model/demo-model/) when the checkout has it.

use std::path::Path;

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("demo-model");
    println!("cargo::rustc-check-cfg=cfg(hark_demo_model)");
    println!("cargo::rerun-if-changed={}", dir.display());
    let files = [
        "config.json",
        "generation_config.json",
        "processor_config.json",
        "tokenizer.json",
        "model.safetensors",
    ];
    for f in files {
        println!("cargo::rerun-if-changed={}", dir.join(f).display());
    }
    if files.iter().all(|f| dir.join(f).is_file()) {
        println!("cargo::rustc-cfg=hark_demo_model");
    }
}
