//! Every harkd setting, as listed by `hark_daemon::settings` from the `Config` struct, is
//! reachable by config file, `HARKD_<NAME>` variable and flag, with the precedence
//! default < file < variable < flag; `--print-config` documents each one; the daemon README's
//! settings table is the generated one.

mod common;

use std::path::Path;
use std::process::Command;

use common::harkd;
use hark_daemon::settings::{self, Kind, Setting};

/// `harkd … --print-config`, parsed.
fn printed(cmd: &mut Command) -> toml::Table {
    let out = cmd.arg("--print-config").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout.parse().unwrap_or_else(|e| panic!("{e}\n{stdout}"))
}

/// Three values for the file, the variable and the flag, each different from the one before
/// (and the first from the default). Free-text settings need theirs named here.
fn samples(s: &Setting) -> [String; 3] {
    let named: Option<[&str; 3]> = match s.key.as_str() {
        "listen" => Some(["127.0.0.1:5001", "localhost:5002", "0.0.0.0:5003"]),
        "wyoming_listen" => Some(["127.0.0.1:10300", "0.0.0.0:10301", "127.0.0.1:10302"]),
        "model" => Some(["/models/a", "org/b", "/models/c"]),
        "token" => Some(["file-secret", "env-secret", "flag-secret"]),
        "token_file" => Some(["/run/a", "/run/b", "/run/c"]),
        "default_language" => Some(["de", "fr", "es"]),
        "allowed_origins" => Some(["https://a.example", "https://b.example:8443", "*"]),
        "limits.sample_rates" => Some(["24000,16000", "24000", "48000,24000"]),
        _ => None,
    };
    if let Some(values) = named {
        return values.map(str::to_string);
    }
    let default = settings::default_value(s);
    match &s.kind {
        Kind::Integer { .. } => {
            let d: i64 = default.as_deref().map_or(0, |d| d.parse().unwrap());
            [d + 1, d + 2, d + 3].map(|v| v.to_string())
        }
        Kind::Number => {
            let d: f64 = default.as_deref().map_or(0.0, |d| d.parse().unwrap());
            [d + 0.5, d + 1.0, d + 1.5].map(|v| v.to_string())
        }
        Kind::Boolean => {
            let d = default.as_deref() == Some("true");
            [!d, d, !d].map(|v| v.to_string())
        }
        Kind::Choice(names) => {
            let shown = |n: &String| format!("\"{n}\"");
            let other = |not: Option<String>| {
                names
                    .iter()
                    .find(|n| Some(shown(n)) != not)
                    .unwrap()
                    .clone()
            };
            let a = other(default);
            let b = other(Some(shown(&a)));
            let c = other(Some(shown(&b)));
            [a, b, c]
        }
        Kind::List(item) => match &**item {
            Kind::Choice(names) => [&names[0], &names[1], &names[0]].map(|n| n.clone()),
            Kind::Integer { .. } => ["1", "2", "3"].map(str::to_string),
            _ => panic!(
                "name three values for the list setting `{}` in samples()",
                s.key
            ),
        },
        Kind::Text => panic!("name three values for the setting `{}` in samples()", s.key),
    }
}

#[test]
fn every_setting_is_reachable_by_file_variable_and_flag_in_that_order() {
    let all = settings::all();
    assert!(all.len() >= 25, "only {} settings found", all.len());
    // Flags and variables use the bare name, so names must be unique across sections.
    for s in all {
        assert_eq!(
            all.iter().filter(|o| o.name == s.name).count(),
            1,
            "two settings are named {}",
            s.name
        );
    }
    let defaults = printed(&mut harkd());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("harkd.toml");
    for s in all {
        let [in_file, in_env, in_flag] = samples(s);
        let expect = |raw: &str| {
            if s.secret() {
                toml::Value::String("********".into())
            } else {
                s.kind.parse(raw).unwrap()
            }
        };
        let default = settings::lookup(&defaults, s).cloned();
        assert_eq!(
            default.map(|v| v.to_string()),
            settings::default_value(s),
            "{}: default",
            s.key
        );
        assert_ne!(
            settings::default_value(s),
            Some(s.kind.parse(&in_file).unwrap().to_string()),
            "{}: the file sample must differ from the default",
            s.key
        );

        let mut table = toml::Table::new();
        settings::insert(&mut table, s, s.kind.parse(&in_file).unwrap());
        std::fs::write(&file, toml::to_string(&table).unwrap()).unwrap();
        let from_file = printed(harkd().arg("--config").arg(&file));
        assert_eq!(
            settings::lookup(&from_file, s),
            Some(&expect(&in_file)),
            "{}: file over default",
            s.key
        );

        let from_env = printed(harkd().arg("--config").arg(&file).env(&s.env, &in_env));
        assert_eq!(
            settings::lookup(&from_env, s),
            Some(&expect(&in_env)),
            "{}: {} over the file",
            s.key,
            s.env
        );

        let flag = format!("--{}", s.flag);
        let out = harkd()
            .arg("--config")
            .arg(&file)
            .env(&s.env, &in_env)
            .args([flag.as_str(), in_flag.as_str(), "--print-config"])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let from_flag: toml::Table = stdout.parse().unwrap();
        assert_eq!(
            settings::lookup(&from_flag, s),
            Some(&expect(&in_flag)),
            "{}: {flag} over {}",
            s.key,
            s.env
        );
        if s.secret() {
            for secret in [&in_file, &in_env, &in_flag] {
                assert!(!stdout.contains(secret.as_str()), "{} printed", s.key);
            }
        }
    }
}

#[test]
fn bad_flag_and_variable_values_name_their_setting() {
    for (flag, env, value) in [
        ("--chunk-ms", "HARKD_CHUNK_MS", "fast"),
        ("--device", "HARKD_DEVICE", "tpu"),
        ("--max-channels", "HARKD_MAX_CHANNELS", "70000"),
    ] {
        let out = harkd()
            .args([flag, value, "--print-config"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(stderr.contains(flag) && stderr.contains(value), "{stderr}");
        let out = harkd()
            .env(env, value)
            .arg("--print-config")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{env}={value} accepted");
    }
}

#[test]
fn print_config_documents_every_setting_including_the_model() {
    let out = harkd().arg("--print-config").output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    for s in settings::all() {
        let set = format!("{} = ", s.name);
        let unset = format!("# {} = (not set)", s.name);
        let at = lines
            .iter()
            .position(|l| l.starts_with(&set) || *l == unset)
            .unwrap_or_else(|| panic!("{} is not printed:\n{text}", s.key));
        let doc_first_line = s.doc.lines().next().unwrap_or_default();
        assert!(!doc_first_line.is_empty(), "{} has no doc comment", s.key);
        assert!(
            lines[..at]
                .iter()
                .rev()
                .take_while(|l| l.starts_with('#'))
                .any(|l| l.contains(doc_first_line)),
            "{} is printed without its documentation:\n{text}",
            s.key
        );
    }
    assert!(text.contains("# model = (not set)"), "{text}");
    let with_model = harkd()
        .args(["--model", "google/gemma-4-E2B-it", "--print-config"])
        .output()
        .unwrap();
    let printed: toml::Table = String::from_utf8(with_model.stdout)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(printed["model"].as_str(), Some("google/gemma-4-E2B-it"));
}

#[test]
fn the_daemon_readme_settings_table_is_the_generated_one() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let (begin, end) = ("<!-- settings-table -->\n", "<!-- /settings-table -->");
    let start = readme
        .find(begin)
        .expect("README has the settings table markers")
        + begin.len();
    let stop = readme[start..].find(end).expect("end marker") + start;
    let generated = settings::markdown_table();
    assert!(
        readme[start..stop] == generated,
        "daemon/README.md's settings table differs from the settings harkd has; replace it with:\n{generated}"
    );
}

#[test]
fn listen_takes_host_names_and_a_default_port() {
    for (given, shown) in [
        ("0.0.0.0", "0.0.0.0:4275"),
        ("localhost:8765", "localhost:8765"),
        ("[::1]", "[::1]:4275"),
    ] {
        let cfg = printed(harkd().args(["--listen", given]));
        assert_eq!(cfg["listen"].as_str(), Some(shown), "{given}");
    }
}
