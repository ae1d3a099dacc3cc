//! Reading keys out of a parsed configuration object, with the file, the key path and the reason
//! in every error, and unknown keys reported with the closest known key.
//!
//! Both loaders (agent.json and native YAML) read through [`Obj`]; only the scalar rules differ:
//! agent.json is lenient as the Kinesis Agent is (numbers and booleans may be strings, integer
//! strings follow Java's `Long.decode`: `0x10` is 16, `010` is 8), the native format takes plain
//! decimal strings.

use serde_json::{Map, Value};
use std::cell::RefCell;
use std::fmt;
use std::path::{Path, PathBuf};

/// A configuration problem: which file, which key, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub key: String,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.reason)
        } else {
            write!(f, "{}: `{}`: {}", self.file.display(), self.key, self.reason)
        }
    }
}

/// All problems found in one load; the configuration is refused if there is any. The warnings
/// found on the way (unknown keys) come along: a typo often explains an error.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfigErrors {
    pub errors: Vec<ConfigError>,
    pub warnings: Vec<String>,
}

impl ConfigErrors {
    pub fn new(errors: Vec<ConfigError>, warnings: Vec<String>) -> Self {
        ConfigErrors { errors, warnings }
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scalars {
    /// The Kinesis Agent's lenient rules.
    Java,
    /// Plain YAML values; numeric strings in decimal.
    Plain,
}

/// Collects errors and warnings while one file is read.
pub struct Ctx {
    pub file: PathBuf,
    pub scalars: Scalars,
    pub errors: Vec<ConfigError>,
    pub warnings: Vec<String>,
    /// Problems that stop only the flow being read (it would drop every line): the flow is
    /// loaded but held back, not started, while the others run.
    pub holds: Vec<ConfigError>,
}

impl Ctx {
    pub fn new(file: &Path, scalars: Scalars) -> Self {
        Ctx { file: file.to_path_buf(), scalars, errors: Vec::new(), warnings: Vec::new(), holds: Vec::new() }
    }

    pub fn error(&mut self, key: &str, reason: impl Into<String>) {
        self.errors.push(ConfigError { file: self.file.clone(), key: key.to_string(), reason: reason.into() });
    }

    /// A problem of the flow being read that would make it drop every line: the flow is held
    /// back (see [`Ctx::holds`]).
    pub fn hold(&mut self, key: &str, reason: impl Into<String>) {
        self.holds.push(ConfigError { file: self.file.clone(), key: key.to_string(), reason: reason.into() });
    }

    pub fn warn(&mut self, key: &str, msg: impl fmt::Display) {
        self.warnings.push(format!("{}: `{}`: {}", self.file.display(), key, msg));
    }
}

/// One JSON/YAML object being read; remembers which keys were asked for.
pub struct Obj<'a> {
    pub map: &'a Map<String, Value>,
    pub path: String,
    known: RefCell<Vec<&'static str>>,
}

pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

impl<'a> Obj<'a> {
    pub fn new(map: &'a Map<String, Value>, path: impl Into<String>) -> Self {
        Obj { map, path: path.into(), known: RefCell::new(Vec::new()) }
    }

    pub fn key_path(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// The raw value; marks the key as known.
    pub fn get(&self, key: &'static str) -> Option<&'a Value> {
        self.known.borrow_mut().push(key);
        self.map.get(key).filter(|v| !v.is_null())
    }

    /// Keys accepted and ignored (legacy keys).
    pub fn ignore(&self, keys: &[&'static str]) {
        self.known.borrow_mut().extend_from_slice(keys);
    }

    pub fn has(&self, key: &'static str) -> bool {
        self.get(key).is_some()
    }

    pub fn str(&self, ctx: &mut Ctx, key: &'static str) -> Option<String> {
        match self.get(key)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            other => {
                ctx.error(&self.key_path(key), format!("expected a string, found {}", kind(other)));
                None
            }
        }
    }

    /// An optional string that, when given, must not be empty (a path, say: an empty one would
    /// silently mean the current directory).
    pub fn nonempty_str(&self, ctx: &mut Ctx, key: &'static str) -> Option<String> {
        let s = self.str(ctx, key)?;
        if s.trim().is_empty() {
            ctx.error(&self.key_path(key), "must not be empty (leave the key out for the default)");
            return None;
        }
        Some(s)
    }

    /// A non-empty string, or an error naming the key when it is required.
    pub fn required_str(&self, ctx: &mut Ctx, key: &'static str) -> Option<String> {
        let errors_before = ctx.errors.len();
        match self.str(ctx, key) {
            Some(s) if !s.is_empty() => Some(s),
            Some(_) => {
                ctx.error(&self.key_path(key), "must not be empty");
                None
            }
            None => {
                if ctx.errors.len() == errors_before {
                    ctx.error(&self.key_path(key), "is required");
                }
                None
            }
        }
    }

    /// An integer within `min..=max`, or the default.
    pub fn int(&self, ctx: &mut Ctx, key: &'static str, default: i64, min: i64, max: i64) -> i64 {
        let Some(v) = self.get(key) else {
            return default;
        };
        let parsed = match v {
            Value::Number(n) => match n.as_i64() {
                Some(i) => Ok(i),
                None if n.to_string().contains(['.', 'e', 'E']) => Err(format!("{n} is not a whole number")),
                None => Err(format!("{n} is too large")),
            },
            Value::String(s) => parse_int(s.trim(), ctx.scalars).ok_or_else(|| format!("{s:?} is not a whole number")),
            other => Err(format!("expected a whole number, found {}", kind(other))),
        };
        match parsed {
            Ok(i) if i < min || i > max => {
                ctx.error(&self.key_path(key), format!("value {i} is outside of valid range [{min}..{max}]"));
                default
            }
            Ok(i) => i,
            Err(e) => {
                ctx.error(&self.key_path(key), e);
                default
            }
        }
    }

    pub fn bool(&self, ctx: &mut Ctx, key: &'static str, default: bool) -> bool {
        let Some(v) = self.get(key) else {
            return default;
        };
        let parsed = match v {
            Value::Bool(b) => Some(*b),
            Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "yes" | "t" | "y" | "1" => Some(true),
                "false" | "no" | "f" | "n" | "0" => Some(false),
                _ => None,
            },
            Value::Number(n) => match n.as_i64() {
                Some(1) => Some(true),
                Some(0) => Some(false),
                _ => None,
            },
            _ => None,
        };
        parsed.unwrap_or_else(|| {
            ctx.error(&self.key_path(key), format!("{} is not a boolean (true/false, yes/no, t/f, y/n, 1/0)", show(v)));
            default
        })
    }

    /// A case-sensitive enumeration.
    pub fn enumeration<T: Clone>(&self, ctx: &mut Ctx, key: &'static str, choices: &[(&str, T)], default: T) -> T {
        let Some(s) = self.str(ctx, key) else {
            return default;
        };
        match choices.iter().find(|(n, _)| *n == s) {
            Some((_, v)) => v.clone(),
            None => {
                let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
                ctx.error(&self.key_path(key), format!("{s:?} is not one of {}", names.join(", ")));
                default
            }
        }
    }

    pub fn str_list(&self, ctx: &mut Ctx, key: &'static str) -> Option<Vec<String>> {
        match self.get(key)? {
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, it) in items.iter().enumerate() {
                    match it {
                        Value::String(s) => out.push(s.clone()),
                        other => ctx.error(&format!("{}[{i}]", self.key_path(key)), format!("expected a string, found {}", kind(other))),
                    }
                }
                Some(out)
            }
            Value::String(s) if ctx.scalars == Scalars::Plain => Some(vec![s.clone()]),
            other => {
                ctx.error(&self.key_path(key), format!("expected a list of strings, found {}", kind(other)));
                None
            }
        }
    }

    pub fn object(&self, ctx: &mut Ctx, key: &'static str) -> Option<Obj<'a>> {
        match self.get(key)? {
            Value::Object(m) => Some(Obj::new(m, self.key_path(key))),
            other => {
                ctx.error(&self.key_path(key), format!("expected an object, found {}", kind(other)));
                None
            }
        }
    }

    /// Reports every key that was never asked for, with the closest known key.
    pub fn finish(&self, ctx: &mut Ctx) {
        let known = self.known.borrow();
        for k in self.map.keys() {
            if known.contains(&k.as_str()) {
                continue;
            }
            let best = known
                .iter()
                .map(|cand: &&str| (strsim::normalized_damerau_levenshtein(&k.to_lowercase(), &cand.to_lowercase()), *cand))
                .filter(|(score, _)| *score >= 0.6)
                .max_by(|a, b| a.0.total_cmp(&b.0));
            let path = join(&self.path, k);
            match best {
                Some((_, cand)) => ctx.warn(&path, format!("unknown key, ignored; did you mean `{cand}`?")),
                None => ctx.warn(&path, "unknown key, ignored"),
            }
        }
    }
}

/// Integer text: Java `Long.decode` for agent.json, decimal for YAML.
pub fn parse_int(s: &str, scalars: Scalars) -> Option<i64> {
    if scalars == Scalars::Plain {
        return s.parse().ok();
    }
    let (neg, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let (radix, digits) = if let Some(h) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")).or_else(|| body.strip_prefix('#')) {
        (16, h)
    } else if body.len() > 1 && body.starts_with('0') {
        (8, &body[1..])
    } else {
        (10, body)
    };
    if digits.is_empty() || digits.starts_with(['-', '+']) {
        return None;
    }
    let v = i64::from_str_radix(digits, radix).ok()?;
    Some(if neg { -v } else { v })
}

pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_decode_rules() {
        assert_eq!(parse_int("1000", Scalars::Java), Some(1000));
        assert_eq!(parse_int("0x10", Scalars::Java), Some(16));
        assert_eq!(parse_int("#10", Scalars::Java), Some(16));
        assert_eq!(parse_int("010", Scalars::Java), Some(8));
        assert_eq!(parse_int("-010", Scalars::Java), Some(-8));
        assert_eq!(parse_int("0", Scalars::Java), Some(0));
        assert_eq!(parse_int("08", Scalars::Java), None);
        assert_eq!(parse_int("010", Scalars::Plain), Some(10));
        assert_eq!(parse_int("", Scalars::Java), None);
    }

    #[test]
    fn lenient_scalars_and_ranges() {
        let v = serde_json::json!({"a": "1000", "b": 1000.0, "c": "yes", "d": "T", "e": "maybe", "f": 5, "g": 1e3});
        let Value::Object(m) = &v else { unreachable!() };
        let mut ctx = Ctx::new(Path::new("agent.json"), Scalars::Java);
        let o = Obj::new(m, "flows[0]");
        assert_eq!(o.int(&mut ctx, "a", 0, 0, 2000), 1000);
        assert!(o.bool(&mut ctx, "c", false));
        assert!(o.bool(&mut ctx, "d", false));
        assert_eq!(ctx.errors.len(), 0);
        o.int(&mut ctx, "b", 0, 0, 2000);
        o.bool(&mut ctx, "e", false);
        o.int(&mut ctx, "f", 0, 10, 20);
        let msgs: Vec<String> = ctx.errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(msgs[0], "agent.json: `flows[0].b`: 1000.0 is not a whole number");
        assert!(msgs[1].contains("flows[0].e") && msgs[1].contains("not a boolean"));
        assert_eq!(msgs[2], "agent.json: `flows[0].f`: value 5 is outside of valid range [10..20]");
    }

    #[test]
    fn unknown_keys_name_the_closest_key() {
        let v = serde_json::json!({"maxBufferAgeMilis": 1, "zzz": 2, "filePattern": "x"});
        let Value::Object(m) = &v else { unreachable!() };
        let mut ctx = Ctx::new(Path::new("a.json"), Scalars::Java);
        let o = Obj::new(m, "flows[0]");
        o.get("filePattern");
        o.get("maxBufferAgeMillis");
        o.finish(&mut ctx);
        assert_eq!(ctx.warnings.len(), 2);
        assert!(
            ctx.warnings[0].contains("`flows[0].maxBufferAgeMilis`: unknown key, ignored; did you mean `maxBufferAgeMillis`?"),
            "{:?}",
            ctx.warnings
        );
        assert!(ctx.warnings[1].ends_with("unknown key, ignored"));
    }
}
