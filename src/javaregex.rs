//! Compiles a `java.util.regex` pattern from an agent.json into a Rust `regex` with Java's meaning.
//!
//! Guarantees, for patterns it accepts:
//! - `\w \d \s` (and `\W \D \S`, inside or outside classes) are ASCII, as in Java without flags;
//! - `.` matches anything except `\n \r U+0085 U+2028 U+2029`, Java's line terminators;
//! - `$` and `\Z` match at the end or before a final line break; `\Q..\E`, `\e`, `\cX`, `\uXXXX`,
//!   octal `\0nn`, `\R` and Java's ASCII POSIX classes (`\p{Alpha}` ...) are translated;
//! - [`JavaRegex::full_match`] is `Matcher.matches()` and [`JavaRegex::prefix_match`] is
//!   `Matcher.lookingAt()`.
//!
//! Constructs that a finite-automaton engine cannot run (back-references, look-around, atomic
//! groups, possessive quantifiers, `(?s)` after the fact) are refused with the construct named, so
//! that a bad pattern fails at start instead of silently matching something else.
//! Not reproduced: `\b` around non-ASCII letters and `$` before a line break inside a multi-line
//! record follow Rust's rules.

use regex::Regex;
use std::fmt;

/// A pattern that could not be used, with the construct and its position in the original text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternError {
    pub message: String,
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// A compiled Java pattern.
#[derive(Debug, Clone)]
pub struct JavaRegex {
    source: String,
    anchored_full: Regex,
    anchored_prefix: Regex,
    unanchored: Regex,
}

/// Two patterns are equal when their Java source is (they compile to the same thing).
impl PartialEq for JavaRegex {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl JavaRegex {
    pub fn new(java: &str) -> Result<Self, PatternError> {
        let body = translate(java)?;
        let compile = |p: String| {
            regex::RegexBuilder::new(&p)
                .size_limit(32 << 20)
                .build()
                .map_err(|e| PatternError { message: format!("the pattern does not compile: {}", first_line(&e.to_string())) })
        };
        Ok(JavaRegex {
            source: java.to_string(),
            anchored_full: compile(format!(r"\A(?:{body})\z"))?,
            anchored_prefix: compile(format!(r"\A(?:{body})"))?,
            unanchored: compile(body)?,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Number of capturing groups, counted as Java counts them.
    pub fn group_count(&self) -> usize {
        self.unanchored.captures_len() - 1
    }

    /// The regex that must match the whole text (`matches()`), for capture extraction.
    pub fn full(&self) -> &Regex {
        &self.anchored_full
    }

    /// `lookingAt()`: the pattern matches a prefix of the text.
    pub fn prefix_match(&self, text: &str) -> bool {
        self.anchored_prefix.is_match(text)
    }

    pub fn full_match(&self, text: &str) -> bool {
        self.anchored_full.is_match(text)
    }

    /// The unanchored regex, for `find()` loops such as `String.split`.
    pub fn unanchored(&self) -> &Regex {
        &self.unanchored
    }
}

fn first_line(s: &str) -> String {
    // regex errors are multi-line with a caret diagram; keep the part that says what is wrong.
    s.lines().filter(|l| l.starts_with("error:")).map(|l| l.trim_start_matches("error:").trim()).next().unwrap_or(s).to_string()
}

const DOT: &str = r"[^\n\r\x{85}\x{2028}\x{2029}]";
/// Java's `$`: end of input or before a line break; zero-width.
const END: &str = r"(?Rm:$)";

fn refuse(what: &str, at: usize) -> PatternError {
    PatternError {
        message: format!(
            "{what} at character {} is not supported (logferry's regex engine has no backtracking); rewrite the pattern without it",
            at + 1
        ),
    }
}

/// Rewrites a Java pattern into Rust `regex` syntax with Java's meaning.
pub fn translate(java: &str) -> Result<String, PatternError> {
    let chars: Vec<char> = java.chars().collect();
    let mut out = String::with_capacity(java.len() + 16);
    let mut i = 0;
    let mut class_depth = 0usize;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' => {
                let Some(&e) = chars.get(i + 1) else {
                    return Err(PatternError { message: "the pattern ends with a lone backslash".into() });
                };
                i += 2;
                let inside = class_depth > 0;
                match e {
                    'w' => out.push_str(if inside { "[:word:]" } else { "[[:word:]]" }),
                    'W' => out.push_str(if inside { "[:^word:]" } else { "[[:^word:]]" }),
                    'd' => out.push_str(if inside { "[:digit:]" } else { "[[:digit:]]" }),
                    'D' => out.push_str(if inside { "[:^digit:]" } else { "[[:^digit:]]" }),
                    's' => out.push_str(if inside { "[:space:]" } else { "[[:space:]]" }),
                    'S' => out.push_str(if inside { "[:^space:]" } else { "[[:^space:]]" }),
                    'h' => out.push_str(if inside {
                        r" \t\xA0\x{1680}\x{180e}\x{2000}-\x{200a}\x{202f}\x{205f}\x{3000}"
                    } else {
                        r"[ \t\xA0\x{1680}\x{180e}\x{2000}-\x{200a}\x{202f}\x{205f}\x{3000}]"
                    }),
                    'v' => {
                        out.push_str(if inside { r"\n\x0B\x0C\r\x{85}\x{2028}\x{2029}" } else { r"[\n\x0B\x0C\r\x{85}\x{2028}\x{2029}]" })
                    }
                    'R' if !inside => out.push_str(r"(?:\r\n|[\n\x0B\x0C\r\x{85}\x{2028}\x{2029}])"),
                    't' | 'n' | 'r' | 'f' | 'a' => {
                        out.push('\\');
                        out.push(e)
                    }
                    'e' => out.push_str(r"\x1B"),
                    'b' | 'B' | 'A' | 'z' if !inside => {
                        out.push('\\');
                        out.push(e)
                    }
                    'Z' if !inside => out.push_str(END),
                    'G' => return Err(refuse(r"the \G anchor", i - 2)),
                    'k' => return Err(refuse(r"the named back-reference \k<...>", i - 2)),
                    '1'..='9' => return Err(refuse(&format!(r"the back-reference \{e}"), i - 2)),
                    '0' => {
                        let mut v = 0u32;
                        let mut n = 0;
                        while n < 3 && i < chars.len() && ('0'..='7').contains(&chars[i]) && v * 8 + (chars[i] as u32 - 48) <= 0o377 {
                            v = v * 8 + (chars[i] as u32 - 48);
                            i += 1;
                            n += 1;
                        }
                        if n == 0 {
                            return Err(PatternError { message: format!("illegal octal escape at character {}", i - 1) });
                        }
                        out.push_str(&format!(r"\x{{{v:X}}}"));
                    }
                    'x' => {
                        if chars.get(i) == Some(&'{') {
                            let end = chars[i..]
                                .iter()
                                .position(|&c| c == '}')
                                .ok_or_else(|| PatternError { message: format!(r"unclosed \x{{...}} at character {}", i - 1) })?;
                            let hex: String = chars[i + 1..i + end].iter().collect();
                            out.push_str(&format!(r"\x{{{hex}}}"));
                            i += end + 1;
                        } else {
                            let hex: String = chars.get(i..i + 2).unwrap_or(&[]).iter().collect();
                            out.push_str(&format!(r"\x{{{hex}}}"));
                            i += 2;
                        }
                    }
                    'u' => {
                        let hex: String = chars.get(i..i + 4).unwrap_or(&[]).iter().collect();
                        out.push_str(&format!(r"\x{{{hex}}}"));
                        i += 4;
                    }
                    'c' => {
                        let Some(&ctl) = chars.get(i) else {
                            return Err(PatternError { message: r"\c at the end of the pattern".into() });
                        };
                        out.push_str(&format!(r"\x{{{:X}}}", (ctl as u32) ^ 64));
                        i += 1;
                    }
                    'Q' => {
                        let rest: String = chars[i..].iter().collect();
                        let (lit, consumed) = match rest.find(r"\E") {
                            Some(p) => (&rest[..p], p + 2),
                            None => (&rest[..], rest.len()),
                        };
                        for lc in lit.chars() {
                            out.push_str(&regex::escape(&lc.to_string()));
                        }
                        i += rest[..consumed].chars().count();
                    }
                    'p' | 'P' => {
                        let name: String = if chars.get(i) == Some(&'{') {
                            let end = chars[i..]
                                .iter()
                                .position(|&c| c == '}')
                                .ok_or_else(|| PatternError { message: format!(r"unclosed \p{{...}} at character {}", i - 1) })?;
                            let n = chars[i + 1..i + end].iter().collect();
                            i += end + 1;
                            n
                        } else {
                            let n = chars.get(i).map(|c| c.to_string()).unwrap_or_default();
                            i += 1;
                            n
                        };
                        let neg = e == 'P';
                        let posix = match name.as_str() {
                            "Lower" => Some("lower"),
                            "Upper" => Some("upper"),
                            "ASCII" => Some("ascii"),
                            "Alpha" => Some("alpha"),
                            "Digit" => Some("digit"),
                            "Alnum" => Some("alnum"),
                            "Punct" => Some("punct"),
                            "Graph" => Some("graph"),
                            "Print" => Some("print"),
                            "Blank" => Some("blank"),
                            "Cntrl" => Some("cntrl"),
                            "XDigit" => Some("xdigit"),
                            "Space" => Some("space"),
                            _ => None,
                        };
                        if let Some(p) = posix {
                            let cls = format!("[:{}{p}:]", if neg { "^" } else { "" });
                            if inside {
                                out.push_str(&cls)
                            } else {
                                out.push_str(&format!("[{cls}]"))
                            }
                        } else if name.starts_with("java") {
                            return Err(refuse(&format!(r"the Java character property \{e}{{{name}}}"), i - 2));
                        } else {
                            let n = name.strip_prefix("Is").or_else(|| name.strip_prefix("In")).unwrap_or(&name);
                            out.push_str(&format!(r"\{e}{{{n}}}"));
                        }
                    }
                    c2 if c2.is_ascii_alphanumeric() => {
                        return Err(PatternError { message: format!(r"unknown escape \{c2} at character {}", i - 1) });
                    }
                    c2 => out.push_str(&regex::escape(&c2.to_string())),
                }
                continue;
            }
            '[' => {
                class_depth += 1;
                out.push('[');
                i += 1;
                if chars.get(i) == Some(&'^') {
                    out.push('^');
                    i += 1;
                }
                // Java takes a `]` right after `[` or `[^` literally, as Rust does.
                continue;
            }
            ']' if class_depth > 0 => {
                class_depth -= 1;
                out.push(']');
            }
            _ if class_depth > 0 => {
                if c == '[' || c == '&' || c == '-' || c == '^' {
                    out.push(c)
                } else if c == '~' {
                    out.push_str(r"\~")
                } else {
                    out.push(c)
                }
            }
            '.' => out.push_str(DOT),
            '$' => out.push_str(END),
            '(' => {
                if chars.get(i + 1) == Some(&'?') {
                    let rest: String = chars[i + 2..chars.len().min(i + 5)].iter().collect();
                    if rest.starts_with('=') || rest.starts_with('!') {
                        return Err(refuse("look-ahead (?= or (?!", i));
                    }
                    if rest.starts_with("<=") || rest.starts_with("<!") {
                        return Err(refuse("look-behind (?<= or (?<!", i));
                    }
                    if rest.starts_with('>') {
                        return Err(refuse("the atomic group (?>", i));
                    }
                    if !rest.starts_with('<') && !rest.starts_with(':') {
                        // inline flags such as (?i) or (?i:...)
                        let flags: String = chars[i + 2..].iter().take_while(|c| c.is_ascii_alphabetic() || **c == '-').collect();
                        if flags.contains('s') || flags.contains('d') || flags.contains('U') || flags.contains('c') {
                            return Err(refuse(&format!("the inline flag (?{flags})"), i));
                        }
                    }
                }
                out.push('(');
            }
            '*' | '+' | '?' | '}' => {
                out.push(c);
                if chars.get(i + 1) == Some(&'+') && !(c == '?' && out.ends_with("(?")) {
                    return Err(refuse(&format!("the possessive quantifier {c}+"), i));
                }
            }
            _ => out.push(c),
        }
        i += 1;
    }
    Ok(out)
}

/// Java's `String.split(regex)` with limit 0: empty leading piece only for a non-empty match,
/// trailing empty pieces removed, the whole input when nothing matches.
pub fn java_split<'t>(re: &JavaRegex, text: &'t str, pieces: &mut Vec<&'t str>) {
    pieces.clear();
    let rx = re.unanchored();
    let mut index = 0;
    let mut search = 0;
    while search <= text.len() {
        let Some(m) = rx.find_at(text, search) else {
            break;
        };
        if m.start() == m.end() {
            // the next search starts one character further, as Matcher.find() does
            search = m.end() + text[m.end()..].chars().next().map_or(1, char::len_utf8);
            if m.start() == 0 {
                continue;
            }
        } else {
            search = m.end();
        }
        pieces.push(&text[index..m.start()]);
        index = m.end();
    }
    if index == 0 && pieces.is_empty() {
        pieces.push(text);
        return;
    }
    pieces.push(&text[index..]);
    while pieces.last() == Some(&"") {
        pieces.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_digit_space_are_ascii() {
        let r = JavaRegex::new(r"\w+ \d+\s\S").unwrap();
        assert!(r.full_match("ab_9 12\tx"));
        assert!(!r.full_match("é 12 x"));
        assert!(!r.full_match("a ٣ x"));
        let r = JavaRegex::new(r"[\w.]+").unwrap();
        assert!(r.full_match("a.b_c"));
        assert!(!r.full_match("aé"));
    }

    #[test]
    fn dot_excludes_java_line_terminators() {
        let r = JavaRegex::new(r"a.*").unwrap();
        assert!(r.full_match("abc\u{0}"));
        for t in ["a\r", "a\u{85}", "a\u{2028}", "a\u{2029}", "a\n"] {
            assert!(!r.full_match(t), "{t:?}");
        }
    }

    #[test]
    fn full_and_prefix_matching() {
        let r = JavaRegex::new(r"\d{4}-").unwrap();
        assert!(r.prefix_match("2024-01-01 x\n"));
        assert!(!r.full_match("2024-01-01"));
        assert!(!r.prefix_match(" 2024-"));
        let r = JavaRegex::new(r"x$").unwrap();
        assert!(r.prefix_match("x\n"));
        assert!(r.full_match("x"));
    }

    #[test]
    fn unsupported_constructs_are_named() {
        for (p, what) in [
            (r"(a)\1", r"back-reference \1"),
            (r"a(?=b)", "look-ahead"),
            (r"(?<!a)b", "look-behind"),
            (r"(?>a)", "atomic group"),
            (r"a*+", "possessive quantifier *+"),
            (r"\p{javaLowerCase}", "Java character property"),
        ] {
            let e = JavaRegex::new(p).unwrap_err().message;
            assert!(e.contains(what), "{p}: {e}");
        }
        assert!(JavaRegex::new("(").unwrap_err().message.contains("does not compile"));
    }

    #[test]
    fn java_escapes_translate() {
        assert!(JavaRegex::new(r"\Qa.b\E").unwrap().full_match("a.b"));
        assert!(!JavaRegex::new(r"\Qa.b\E").unwrap().full_match("axb"));
        assert!(JavaRegex::new(r"\u0041\x42\0103\e").unwrap().full_match("ABC\x1b"));
        assert!(JavaRegex::new(r"\p{Alpha}+\-\/").unwrap().full_match("abc-/"));
        assert!(JavaRegex::new(r"(?<name>\d+)(?i:x)").unwrap().full_match("12X"));
        assert_eq!(JavaRegex::new(r"(a)(?:b)((c)(?<d>d))").unwrap().group_count(), 4);
        assert!(JavaRegex::new(r"a?+").is_err());
        assert!(JavaRegex::new(r"(?:a)?b").unwrap().full_match("b"));
    }

    fn split(re: &str, text: &str) -> Vec<String> {
        let r = JavaRegex::new(re).unwrap();
        let mut v = Vec::new();
        java_split(&r, text, &mut v);
        v.into_iter().map(String::from).collect()
    }

    #[test]
    fn split_follows_java_semantics() {
        assert_eq!(split(",", "a,,b,,"), ["a", "", "b"]);
        assert_eq!(split(",", ",a"), ["", "a"]);
        assert_eq!(split(",", ""), [""]);
        assert_eq!(split(",", ",,"), Vec::<String>::new());
        assert_eq!(split("|", "abc"), ["a", "b", "c"]);
        assert_eq!(split(r"\|", "a|b"), ["a", "b"]);
        assert_eq!(split(r"\s*,\s*", "a , b,c"), ["a", "b", "c"]);
        assert_eq!(split("\n", "\n\n"), Vec::<String>::new());
        assert_eq!(split("\n", "\na\n\nb\n\n"), ["", "a", "", "b"]);
        // an empty match right after a non-empty one splits again, as Matcher.find() reports it
        assert_eq!(split("x*", "axb"), ["a", "", "b"]);
    }
}
