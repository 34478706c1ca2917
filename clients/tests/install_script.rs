//! `tools/install.sh` into a temporary prefix and home: binaries, ~/.config/hark, systemd user
//! units naming the installed binaries, completions and man pages that work.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_install_script_sets_up_everything_the_docs_name() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let prefix = dir.path().join("prefix");
    std::fs::create_dir_all(&home).unwrap();
    // The binaries this test was built with, hark and harkd side by side.
    let binaries = harkd_binary().parent().unwrap().to_path_buf();
    let out = Command::new("bash")
        .arg(repo().join("tools/install.sh"))
        .arg("--prefix")
        .arg(&prefix)
        .arg("--binaries")
        .arg(&binaries)
        .env("HOME", &home)
        .env_remove("XDG_CONFIG_HOME")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");

    let bin = prefix.join("bin");
    for program in ["hark", "harkd"] {
        let version = Command::new(bin.join(program))
            .arg("--version")
            .output()
            .unwrap();
        assert!(version.status.success(), "{program}");
    }
    let config = home.join(".config");
    assert!(config.join("hark/harkd.env").is_file());
    assert!(config.join("hark/dictate.env").is_file());

    // The units run the installed binaries, and read the settings the script created.
    let harkd_unit = read(&config.join("systemd/user/harkd.service"));
    let dictate_unit = read(&config.join("systemd/user/hark-dictate.service"));
    assert!(
        harkd_unit
            .lines()
            .any(|l| l == format!("ExecStart={}", bin.join("harkd").display())),
        "{harkd_unit}"
    );
    assert!(
        dictate_unit
            .lines()
            .any(|l| l.starts_with(&format!("ExecStart={} dictate", bin.join("hark").display()))),
        "{dictate_unit}"
    );
    assert!(harkd_unit.contains("EnvironmentFile=-%h/.config/hark/harkd.env"));
    assert!(dictate_unit.contains("EnvironmentFile=-%h/.config/hark/dictate.env"));

    // Completions that a shell accepts and that name the subcommands and flags.
    let share = prefix.join("share");
    let bash = share.join("bash-completion/completions/hark");
    let syntax = Command::new("bash").arg("-n").arg(&bash).status().unwrap();
    assert!(syntax.success());
    let hark_bash = read(&bash);
    assert!(hark_bash.contains("transcribe") && hark_bash.contains("--language"));
    let harkd_bash = read(&share.join("bash-completion/completions/harkd"));
    assert!(harkd_bash.contains("--listen"), "{harkd_bash}");
    assert!(read(&share.join("zsh/site-functions/_hark")).starts_with("#compdef hark"));
    assert!(read(&share.join("fish/vendor_completions.d/harkd.fish")).contains("listen"));

    // Man pages: the programs and each hark subcommand, in roff.
    let man = share.join("man/man1");
    for page in ["hark.1", "harkd.1", "hark-transcribe.1", "hark-dictate.1"] {
        let text = read(&man.join(page));
        assert!(text.contains(".TH"), "{page}");
    }
    assert!(read(&man.join("hark-transcribe.1")).contains("language"));

    // A second run keeps settings the user edited.
    std::fs::write(config.join("hark/harkd.env"), "HARKD_MODEL=/models/x\n").unwrap();
    let again = Command::new("bash")
        .arg(repo().join("tools/install.sh"))
        .arg("--prefix")
        .arg(&prefix)
        .arg("--binaries")
        .arg(&binaries)
        .env("HOME", &home)
        .env_remove("XDG_CONFIG_HOME")
        .output()
        .unwrap();
    assert!(again.status.success());
    assert_eq!(
        read(&config.join("hark/harkd.env")),
        "HARKD_MODEL=/models/x\n"
    );

    // A bad argument is refused with the usage.
    let bad = Command::new("bash")
        .arg(repo().join("tools/install.sh"))
        .arg("--frobnicate")
        .env("HOME", &home)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown argument --frobnicate"));
}
