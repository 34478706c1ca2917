//! `hark --help` lists what users run; the developer commands are hidden but still work and
//! are named in the help's footer.

use std::process::Command;

fn hark(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hark"))
        .args(args)
        .output()
        .expect("run hark");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn help_lists_user_commands_and_hides_developer_ones() {
    let (ok, help) = hark(&["--help"]);
    assert!(ok, "{help}");
    let listed: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    for user in [
        "transcribe",
        "captions",
        "dictate",
        "meeting",
        "model",
        "devices",
    ] {
        assert!(listed.contains(&user), "{user} missing from {listed:?}");
    }
    for dev in ["dump", "eval", "bench"] {
        assert!(!listed.contains(&dev), "{dev} listed in {listed:?}");
        let (ok, sub) = hark(&[dev, "--help"]);
        assert!(
            ok && sub.contains("Usage: hark"),
            "hark {dev} --help: {sub}"
        );
    }
    assert!(help.contains("Developer commands"), "{help}");
}
