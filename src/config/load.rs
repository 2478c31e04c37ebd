//! Loading: defaults < file < environment < flags, merged as TOML into the raw shape and
//! then validated.

use std::path::Path;

use serde::Deserialize;

use super::{Config, ConfigError, KEYS, RawConfig, validate};

/// Values given on the command line (highest precedence).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--listen`
    pub listen: Option<String>,
    /// `--api-listen`
    pub api_listen: Option<String>,
    /// `--upstream`
    pub upstream: Option<String>,
    /// `--db`
    pub db: Option<String>,
    /// `--log-format`
    pub log_format: Option<String>,
}

/// Short environment names for the main settings, matching the flags.
const ENV_ALIASES: &[(&str, &str)] = &[
    ("OLLAMETER_LISTEN", "server.listen"),
    ("OLLAMETER_API_LISTEN", "server.api_listen"),
    ("OLLAMETER_UPSTREAM", "upstream.url"),
    ("OLLAMETER_DB", "store.path"),
    ("OLLAMETER_LOG_FORMAT", "log.format"),
];

/// The environment variable for a `section.key`.
pub fn env_name(key: &str) -> String {
    format!("OLLAMETER_{}", key.replace('.', "_").to_uppercase())
}

/// Loads the configuration: defaults < file < environment < flags.
///
/// `env` is passed in (not read from the process) so tests can drive it.
pub fn load(
    file: Option<&Path>,
    env: &[(String, String)],
    flags: &Overrides,
) -> Result<Config, ConfigError> {
    let mut table = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| ConfigError(vec![format!("config file {}: {e}", path.display())]))?;
            text.parse::<toml::Table>().map_err(|e| {
                ConfigError(vec![format!(
                    "config file {}: {}",
                    path.display(),
                    e.message()
                )])
            })?
        }
        None => toml::Table::new(),
    };
    let mut problems = Vec::new();
    // The standard OpenTelemetry variables first, so that `OLLAMETER_OTEL_*` (more
    // specific to this program) wins over them.
    crate::otel::config::apply_env(env, &mut |key, value| set_key(&mut table, key, value));
    // `upstream.url` from the environment or a flag replaces the file's upstreams, as
    // any key of a higher precedence does.
    let mut url_overridden = flags.upstream.is_some();
    for (name, value) in env {
        let key = if let Some((_, key)) = ENV_ALIASES.iter().find(|(alias, _)| alias == name) {
            Some(*key)
        } else {
            KEYS.iter()
                .chain(crate::alerts::config::KEYS)
                .chain(crate::otel::config::KEYS)
                .copied()
                .find(|k| env_name(k) == *name)
        };
        if let Some(key) = key {
            url_overridden |= key == "upstream.url";
            set_key(&mut table, key, env_value(value));
        } else if name.starts_with("OLLAMETER_") && name != "OLLAMETER_CONFIG" {
            problems.push(format!(
                "environment variable {name} is not a known setting"
            ));
        }
    }
    let flag_values = [
        ("server.listen", &flags.listen),
        ("server.api_listen", &flags.api_listen),
        ("upstream.url", &flags.upstream),
        ("store.path", &flags.db),
        ("log.format", &flags.log_format),
    ];
    for (key, value) in flag_values {
        if let Some(value) = value {
            set_key(&mut table, key, toml::Value::String(value.clone()));
        }
    }
    if url_overridden {
        table.remove("upstreams");
    }
    let raw: RawConfig = match RawConfig::deserialize(toml::Value::Table(table)) {
        Ok(raw) => raw,
        Err(e) => {
            problems.push(e.message().trim().to_string());
            return Err(ConfigError(problems));
        }
    };
    match validate(raw) {
        Ok(config) if problems.is_empty() => Ok(config),
        Ok(_) => Err(ConfigError(problems)),
        Err(ConfigError(more)) => {
            problems.extend(more);
            Err(ConfigError(problems))
        }
    }
}

/// An environment value as TOML when it parses as a number or boolean, else a string.
fn env_value(value: &str) -> toml::Value {
    if let Ok(v) = value.parse::<i64>() {
        return toml::Value::Integer(v);
    }
    // Digits only, so words like `inf` or `nan` stay strings.
    if value
        .chars()
        .all(|c| c.is_ascii_digit() || ".eE+-".contains(c))
        && let Ok(v) = value.parse::<f64>()
        && v.is_finite()
    {
        return toml::Value::Float(v);
    }
    match value {
        "true" => toml::Value::Boolean(true),
        "false" => toml::Value::Boolean(false),
        _ => toml::Value::String(value.to_string()),
    }
}

fn set_key(table: &mut toml::Table, key: &str, value: toml::Value) {
    let (section, leaf) = key.split_once('.').unwrap_or(("", key));
    let entry = table
        .entry(section.to_string())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if !entry.is_table() {
        *entry = toml::Value::Table(toml::Table::new());
    }
    if let toml::Value::Table(t) = entry {
        t.insert(leaf.to_string(), value);
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;
    use crate::config::DEFAULT_LISTEN;
    use crate::config::DEFAULT_UPSTREAM;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_valid() {
        let c = load(None, &[], &Overrides::default()).expect("defaults");
        assert_eq!(c.server.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.proxy.upstream, DEFAULT_UPSTREAM);
        assert_eq!(c.telemetry.upstream, DEFAULT_UPSTREAM);
        assert_eq!(c.proxy.operation_header.as_str(), "x-operation");
        assert_eq!(c.recorder.flush_interval, Duration::from_millis(200));
        assert_eq!(c.proxy.max_body_bytes, 64 * 1024 * 1024);
    }

    #[test]
    fn precedence_is_defaults_file_env_flags() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[server]\nlisten = \"127.0.0.1:1000\"\n[recorder]\nbatch_size = 7\nflush_interval_ms = 9\n[store]\npath = \"file.db\"\n",
        )
        .expect("write");
        let e = env(&[
            ("OLLAMETER_LISTEN", "127.0.0.1:2000"),
            ("OLLAMETER_RECORDER_BATCH_SIZE", "8"),
            ("OLLAMETER_DB", "env.db"),
        ]);
        let flags = Overrides {
            db: Some("flag.db".into()),
            ..Overrides::default()
        };
        let c = load(Some(&path), &e, &flags).expect("valid");
        assert_eq!(c.server.listen.port(), 2000, "env beats file");
        assert_eq!(c.recorder.batch_size, 8, "env beats file");
        assert_eq!(
            c.recorder.flush_interval,
            Duration::from_millis(9),
            "file beats default"
        );
        assert_eq!(c.store.path, PathBuf::from("flag.db"), "flag beats env");
    }

    #[test]
    fn every_problem_is_listed_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[server]\nlisten = \"nowhere\"\n[recorder]\nbatch_size = 0\n[log]\nformat = \"xml\"\n",
        )
        .expect("write");
        let e = env(&[("OLLAMETER_UPSTREAM", "https://x")]);
        let err = load(Some(&path), &e, &Overrides::default()).expect_err("invalid");
        let text = err.to_string();
        for needle in [
            "server.listen",
            "recorder.batch_size",
            "log.format",
            "upstream.url",
        ] {
            assert!(text.contains(needle), "{needle} missing from {text}");
        }
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[store]\npaht = \"x.db\"\n").expect("write");
        let err = load(Some(&path), &[], &Overrides::default()).expect_err("unknown key");
        assert!(err.to_string().contains("paht"), "{err}");
        let err = load(
            None,
            &env(&[("OLLAMETER_NOPE", "1")]),
            &Overrides::default(),
        )
        .expect_err("unknown env");
        assert!(err.to_string().contains("OLLAMETER_NOPE"), "{err}");
    }
}
