//! harkd's settings list, generated from [`Config`]: the JSON Schema that `schemars` derives
//! from the struct (field names, doc comments, types) gives every setting its file key, flag,
//! `HARKD_` variable, help text, `--print-config` comment and README row. A field added to
//! `Config` (or to a section such as `limits`) is a setting everywhere with no other edit.
//!
//! Flags and variables use the setting's own name (`limits.idle_timeout_s` is
//! `--idle-timeout-s` and `HARKD_IDLE_TIMEOUT_S`); names are unique across sections.

use std::sync::LazyLock;

use clap::builder::{PossibleValuesParser, ValueParser};
use clap::{Arg, ArgMatches, Command};
use serde_json::Value as Json;

use crate::config::Config;

/// One setting.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    /// Key path in the file: `chunk_ms`, `limits.idle_timeout_s`.
    pub key: String,
    /// The section (`limits`), or `None` at the top level.
    pub section: Option<String>,
    /// The name inside its section.
    pub name: String,
    /// The flag without its dashes: `idle-timeout-s`.
    pub flag: String,
    /// The environment variable: `HARKD_IDLE_TIMEOUT_S`.
    pub env: String,
    /// What it does (the field's doc comment).
    pub doc: String,
    /// The values it takes.
    pub kind: Kind,
    /// How a value is written (`N`, `cpu|cuda`), for help texts and the README.
    pub value_name: String,
    /// Whether it may be left unset (an `Option` field).
    pub optional: bool,
}

/// The values a setting takes, as a flag or variable spells them.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Integer {
        min: i64,
        max: i64,
    },
    Number,
    Boolean,
    Text,
    Choice(Vec<String>),
    /// Comma-separated items.
    List(Box<Kind>),
}

impl Kind {
    /// The TOML value a flag or variable spells, as the file would hold it.
    pub fn parse(&self, raw: &str) -> Result<toml::Value, String> {
        let raw = raw.trim();
        match self {
            Kind::Integer { min, max } => {
                let n: i64 = raw
                    .parse()
                    .map_err(|_| format!("`{raw}` is not a whole number"))?;
                if !(*min..=*max).contains(&n) {
                    return Err(format!("{n} is outside {min}..={max}"));
                }
                Ok(toml::Value::Integer(n))
            }
            Kind::Number => raw
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .map(toml::Value::Float)
                .ok_or_else(|| format!("`{raw}` is not a number")),
            Kind::Boolean => match raw {
                "true" | "1" | "yes" | "on" => Ok(toml::Value::Boolean(true)),
                "false" | "0" | "no" | "off" => Ok(toml::Value::Boolean(false)),
                _ => Err(format!("`{raw}` is not true or false")),
            },
            Kind::Text => Ok(toml::Value::String(raw.to_string())),
            Kind::Choice(names) => names
                .iter()
                .find(|n| n.eq_ignore_ascii_case(raw))
                .map(|n| toml::Value::String(n.clone()))
                .ok_or_else(|| format!("`{raw}` is not one of {}", names.join(", "))),
            Kind::List(item) => raw
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| item.parse(s))
                .collect::<Result<Vec<_>, _>>()
                .map(toml::Value::Array),
        }
    }

    /// How the value is written, for help texts and the README.
    pub fn value_name(&self) -> String {
        match self {
            Kind::Integer { .. } => "N".into(),
            Kind::Number => "X".into(),
            Kind::Boolean => "true|false".into(),
            Kind::Text => "TEXT".into(),
            Kind::Choice(names) => names.join("|"),
            Kind::List(item) => format!("{},…", item.value_name()),
        }
    }
}

impl Setting {
    /// The doc comment on one line.
    pub fn summary(&self) -> String {
        self.doc.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    /// Whether values are secret (never shown in help or printed configurations).
    pub fn secret(&self) -> bool {
        self.name == "token"
    }

    /// The clap argument for this setting: `--flag VALUE`, also read from its variable. It has
    /// no clap default, so an absent flag leaves the file's value in place.
    fn arg(&'static self) -> Arg {
        let parser = match &self.kind {
            Kind::Choice(names) => ValueParser::new(PossibleValuesParser::new(
                names
                    .iter()
                    .map(|n| clap::builder::PossibleValue::new(n.as_str())),
            )),
            kind => ValueParser::new(move |raw: &str| kind.parse(raw).map(|_| raw.to_string())),
        };
        let shown_default = default_value(self)
            .map(|v| format!(" [default: {}]", v.trim_matches('"')))
            .unwrap_or_else(|| " [default: not set]".into());
        Arg::new(self.name.as_str())
            .long(self.flag.as_str())
            .env(self.env.as_str())
            .hide_env_values(self.secret())
            .value_name(self.value_name.as_str())
            .value_parser(parser)
            .help(format!("{}{shown_default}", self.summary()))
    }
}

/// Every setting, top level first, then each section.
pub fn all() -> &'static [Setting] {
    static SETTINGS: LazyLock<Vec<Setting>> = LazyLock::new(|| {
        let schema = schemars::schema_for!(Config);
        from_schema(schema.as_value())
    });
    &SETTINGS
}

/// The setting with this file key.
pub fn find(key: &str) -> Option<&'static Setting> {
    all().iter().find(|s| s.key == key)
}

/// Sections (tables) of the file, in order.
pub fn sections() -> Vec<&'static str> {
    let mut out: Vec<&str> = Vec::new();
    for s in all() {
        if let Some(section) = &s.section
            && !out.contains(&section.as_str())
        {
            out.push(section);
        }
    }
    out
}

fn from_schema(root: &Json) -> Vec<Setting> {
    let defs = root.get("$defs");
    let resolve = |v: &'_ Json| -> Json {
        match v.get("$ref").and_then(Json::as_str) {
            Some(r) => {
                let name = r.rsplit('/').next().unwrap_or_default();
                defs.and_then(|d| d.get(name))
                    .cloned()
                    .unwrap_or(Json::Null)
            }
            None => v.clone(),
        }
    };
    let mut top = Vec::new();
    let mut nested = Vec::new();
    for (name, prop) in properties(root) {
        let body = resolve(prop);
        if body.get("properties").is_some() {
            for (inner, inner_prop) in properties(&body) {
                nested.push(setting(Some(name), inner, inner_prop, &resolve));
            }
        } else {
            top.push(setting(None, name, prop, &resolve));
        }
    }
    top.extend(nested);
    top
}

fn properties(schema: &Json) -> impl Iterator<Item = (&String, &Json)> {
    schema
        .get("properties")
        .and_then(Json::as_object)
        .into_iter()
        .flatten()
}

fn setting(
    section: Option<&str>,
    name: &str,
    prop: &Json,
    resolve: &dyn Fn(&Json) -> Json,
) -> Setting {
    let (kind, optional) = kind_of(prop, resolve);
    Setting {
        key: match section {
            Some(s) => format!("{s}.{name}"),
            None => name.to_string(),
        },
        section: section.map(str::to_string),
        name: name.to_string(),
        flag: name.replace('_', "-"),
        env: format!("HARKD_{}", name.to_ascii_uppercase()),
        doc: prop
            .get("description")
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_string(),
        value_name: kind.value_name(),
        kind,
        optional,
    }
}

/// The kind of a property, and whether it is optional (`T | null`).
fn kind_of(prop: &Json, resolve: &dyn Fn(&Json) -> Json) -> (Kind, bool) {
    // `Option<T>` is `anyOf: [T, null]` for named types, `type: [t, "null"]` for plain ones.
    if let Some(any) = prop.get("anyOf").and_then(Json::as_array) {
        let inner = any
            .iter()
            .find(|v| v.get("type").and_then(Json::as_str) != Some("null"));
        return (inner.map_or(Kind::Text, |v| kind_of(v, resolve).0), true);
    }
    let body = resolve(prop);
    if let Some(names) = body.get("enum").and_then(Json::as_array) {
        return (choice(names.iter()), false);
    }
    if let Some(one_of) = body.get("oneOf").and_then(Json::as_array) {
        return (choice(one_of.iter().filter_map(|v| v.get("const"))), false);
    }
    let (ty, optional) = match body.get("type") {
        Some(Json::Array(types)) => (
            types
                .iter()
                .filter_map(Json::as_str)
                .find(|t| *t != "null")
                .unwrap_or("string"),
            true,
        ),
        Some(Json::String(t)) => (t.as_str(), false),
        _ => ("string", false),
    };
    let kind = match ty {
        "integer" => {
            let (min, max) = match body.get("format").and_then(Json::as_str) {
                Some("uint8") => (0, i64::from(u8::MAX)),
                Some("uint16") => (0, i64::from(u16::MAX)),
                Some("uint32") => (0, i64::from(u32::MAX)),
                Some("uint" | "uint64") => (0, i64::MAX),
                Some("int32") => (i64::from(i32::MIN), i64::from(i32::MAX)),
                _ => (i64::MIN, i64::MAX),
            };
            Kind::Integer { min, max }
        }
        "number" => Kind::Number,
        "boolean" => Kind::Boolean,
        "array" => Kind::List(Box::new(
            body.get("items")
                .map_or(Kind::Text, |items| kind_of(items, resolve).0),
        )),
        _ => Kind::Text,
    };
    (kind, optional)
}

fn choice<'a>(values: impl Iterator<Item = &'a Json>) -> Kind {
    Kind::Choice(
        values
            .filter_map(Json::as_str)
            .map(str::to_string)
            .collect(),
    )
}

/// A setting's value in a TOML table holding a whole configuration.
pub fn lookup<'t>(table: &'t toml::Table, setting: &Setting) -> Option<&'t toml::Value> {
    match &setting.section {
        Some(section) => table.get(section)?.as_table()?.get(&setting.name),
        None => table.get(&setting.name),
    }
}

/// Set a setting's value in a TOML table holding a whole configuration.
pub fn insert(table: &mut toml::Table, setting: &Setting, value: toml::Value) {
    let slot = match &setting.section {
        Some(section) => table
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new())),
        None => {
            table.insert(setting.name.clone(), value);
            return;
        }
    };
    if let toml::Value::Table(t) = slot {
        t.insert(setting.name.clone(), value);
    }
}

/// Remove a setting from a TOML table.
pub fn remove(table: &mut toml::Table, setting: &Setting) {
    match &setting.section {
        Some(section) => {
            if let Some(toml::Value::Table(t)) = table.get_mut(section) {
                t.remove(&setting.name);
            }
        }
        None => {
            table.remove(&setting.name);
        }
    }
}

/// The built-in default of a setting as TOML text; `None` when unset by default.
pub fn default_value(setting: &Setting) -> Option<String> {
    static DEFAULTS: LazyLock<toml::Table> =
        LazyLock::new(|| Config::default().to_table().unwrap_or_default());
    lookup(&DEFAULTS, setting).map(ToString::to_string)
}

/// The settings given as flags or `HARKD_` variables (clap reads both; a flag wins over its
/// variable).
#[derive(Debug, Clone, Default)]
pub struct SettingArgs {
    /// Each given setting with its text, in settings order.
    pub values: Vec<(&'static Setting, String)>,
}

impl clap::FromArgMatches for SettingArgs {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut args = SettingArgs::default();
        args.update_from_arg_matches(matches)?;
        Ok(args)
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        for s in all() {
            if let Some(raw) = matches.get_one::<String>(&s.name) {
                self.values.retain(|(given, _)| given.key != s.key);
                self.values.push((s, raw.clone()));
            }
        }
        Ok(())
    }
}

impl clap::Args for SettingArgs {
    fn augment_args(cmd: Command) -> Command {
        cmd.next_help_heading("Settings (also HARKD_<NAME> variables and config file keys)")
            .args(all().iter().map(Setting::arg))
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

/// The settings table of `daemon/README.md`: key, flag, variable, default, meaning.
pub fn markdown_table() -> String {
    let mut out =
        String::from("| Setting | Flag | Variable | Default | Meaning |\n|---|---|---|---|---|\n");
    for s in all() {
        let default = default_value(s).unwrap_or_else(|| "not set".into());
        out.push_str(&format!(
            "| `{}` | `--{} {}` | `{}` | `{}` | {} |\n",
            s.key,
            s.flag,
            s.value_name.replace('|', "\\|"),
            s.env,
            default.replace('|', "\\|"),
            s.summary().replace('|', "\\|"),
        ));
    }
    out
}
