//! The third-party Python clients the end-to-end tests drive harkd with can be had.

use hark_tests::python::run_script;

#[test]
fn the_client_packages_import_at_their_pinned_versions() {
    let out = run_script(
        "import importlib.metadata as m, openai, wyoming; print(m.version('openai'), m.version('wyoming'))",
        &[],
    )
    .expect("a Python with tools/test-requirements.txt");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pinned =
        std::fs::read_to_string(hark_tests::repo_root().join("tools/test-requirements.txt"))
            .unwrap();
    for version in stdout.split_whitespace() {
        assert!(
            pinned.contains(&format!("=={version}")),
            "{version} is not the pinned version:\n{pinned}"
        );
    }
}
