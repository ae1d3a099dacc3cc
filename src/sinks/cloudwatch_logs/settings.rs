//! What a CloudWatch Logs destination is configured with: where events go (group and stream
//! names from templates), whether a missing group or stream is created and how, and where each
//! event's time comes from. The configuration fills it in and checks it with what this file
//! states (names, retention days, time formats); the sink reads it.

use crate::sinks::aws::settings::AwsTarget;

/// A CloudWatch Logs destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudWatchLogsSettings {
    pub aws: AwsTarget,
    pub group: NameTemplate,
    pub stream: NameTemplate,
    /// How a missing group or stream is created; `None`: it is not, and the flow says which is
    /// missing and which permission would create it.
    pub create: Option<Creation>,
    pub time: EventTime,
    /// The longest event message, in bytes (longer records are truncated or split by the flow).
    pub max_event_bytes: usize,
}

/// What a group created by the sink gets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Creation {
    /// Days the group keeps events (one of [`RETENTION_DAYS`]); `None`: forever.
    pub retention_days: Option<u32>,
    /// The KMS key (ARN) the group's events are encrypted with.
    pub kms_key_id: Option<String>,
    pub tags: Vec<(String, String)>,
}

/// The retention periods CloudWatch Logs accepts (PutRetentionPolicy), in days.
pub const RETENTION_DAYS: [u32; 22] =
    [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653];

/// Where an event's time comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventTime {
    /// When the line was read.
    ReadTime,
    /// A top-level field of the converted JSON record, in this format; a record without it (or
    /// not JSON, or whose value does not parse) takes the time it was read, counted.
    Field { name: String, format: TimeFormat },
}

/// How a time field is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimeFormat {
    /// Seconds since the epoch, a number or a string, with a fraction or not.
    EpochSeconds,
    /// Milliseconds since the epoch.
    EpochMillis,
    /// RFC 3339 (`2024-05-01T10:00:00.123Z`).
    Rfc3339,
    /// A strftime pattern (`%Y-%m-%d %H:%M:%S`); without `%z` the time is UTC.
    Strftime(String),
}

/// One piece of a name template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Literal(String),
    /// The flow's id.
    Flow,
    /// The host's name.
    Hostname,
    /// The EC2 instance's id (from instance metadata).
    InstanceId,
    /// The base name of the file the record was read from, as it was named when read.
    File,
    /// The container record's pod namespace, pod and container names.
    Namespace,
    Pod,
    Container,
    /// The event's date, `YYYY-MM-DD` (UTC).
    Date,
}

/// The placeholders a name template takes, as written.
pub const PLACEHOLDERS: [(&str, Part); 8] = [
    ("{flow}", Part::Flow),
    ("{hostname}", Part::Hostname),
    ("{instance_id}", Part::InstanceId),
    ("{file}", Part::File),
    ("{namespace}", Part::Namespace),
    ("{pod}", Part::Pod),
    ("{container}", Part::Container),
    ("{date}", Part::Date),
];

/// A log group or stream name with placeholders, as written and as pieces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameTemplate {
    pub text: String,
    pub parts: Vec<Part>,
}

/// What a name may hold: a group name letters, digits and `_-./#`; a stream name anything but
/// `:` and `*`. Both are 1 to 512 characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    Group,
    Stream,
}

/// The longest group or stream name.
pub const MAX_NAME_CHARS: usize = 512;

impl NameKind {
    pub fn allows(self, c: char) -> bool {
        match self {
            NameKind::Group => c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | '#'),
            NameKind::Stream => !matches!(c, ':' | '*') && !c.is_control(),
        }
    }
}

impl NameTemplate {
    /// Parses `text`: each `{...}` must be one of [`PLACEHOLDERS`], and the rest must be
    /// characters a `kind` name may hold.
    pub fn parse(text: &str, kind: NameKind) -> Result<NameTemplate, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(c) = rest.chars().next() {
            if c == '{' {
                let Some((name, part)) = PLACEHOLDERS.iter().find(|(name, _)| rest.starts_with(name)) else {
                    let known: Vec<&str> = PLACEHOLDERS.iter().map(|(n, _)| *n).collect();
                    let end = rest.find('}').map_or(rest.len(), |i| i + 1);
                    return Err(format!("{:?} is not a placeholder: the placeholders are {}", &rest[..end], known.join(", ")));
                };
                if !literal.is_empty() {
                    parts.push(Part::Literal(std::mem::take(&mut literal)));
                }
                parts.push(part.clone());
                rest = &rest[name.len()..];
                continue;
            }
            if !kind.allows(c) {
                return Err(match kind {
                    NameKind::Group => format!("{c:?} cannot be in a log group name (letters, digits and _-./# only)"),
                    NameKind::Stream => format!("{c:?} cannot be in a log stream name (anything but ':' and '*')"),
                });
            }
            literal.push(c);
            rest = &rest[c.len_utf8()..];
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        if parts.is_empty() {
            return Err("is empty".into());
        }
        if text.chars().count() > MAX_NAME_CHARS && parts.iter().all(|p| matches!(p, Part::Literal(_))) {
            return Err(format!("is longer than {MAX_NAME_CHARS} characters"));
        }
        Ok(NameTemplate { text: text.to_string(), parts })
    }

    pub fn uses(&self, part: &Part) -> bool {
        self.parts.contains(part)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_is_literals_and_known_placeholders_with_the_characters_a_name_may_hold() {
        let t = NameTemplate::parse("/aws/rds/instance/{hostname}/audit", NameKind::Group).unwrap();
        assert_eq!(t.parts, vec![Part::Literal("/aws/rds/instance/".into()), Part::Hostname, Part::Literal("/audit".into())]);
        let s = NameTemplate::parse("{instance_id}-{file} {date}", NameKind::Stream).unwrap();
        assert_eq!(s.parts, vec![Part::InstanceId, Part::Literal("-".into()), Part::File, Part::Literal(" ".into()), Part::Date]);
        assert!(s.uses(&Part::File) && !s.uses(&Part::Pod));
        let e = NameTemplate::parse("/app/{host}", NameKind::Group).unwrap_err();
        assert!(e.contains("\"{host}\" is not a placeholder") && e.contains("{hostname}"), "{e}");
        assert!(NameTemplate::parse("a b", NameKind::Group).unwrap_err().contains("log group name"));
        assert!(NameTemplate::parse("a:b", NameKind::Stream).unwrap_err().contains("log stream name"));
        assert!(NameTemplate::parse("", NameKind::Stream).is_err());
        assert!(NameTemplate::parse(&"a".repeat(513), NameKind::Stream).is_err());
    }
}
