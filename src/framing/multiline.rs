//! Multi-line rules: which lines join the record before them. Pure decisions over one line and
//! the state of the record waiting for more; no buffers, no clock (the assemblers keep those).
//!
//! Rules:
//! - `start_pattern` (the Kinesis Agent's `multiLineStartPattern`): a line whose start matches
//!   begins a record, any other joins the one before; the first line is never tested.
//! - `continuation_pattern`: a line whose start matches joins the record before it, any other
//!   begins one.
//! - presets, for stack traces as the runtimes print them:
//!   - `java`: a line naming an exception (a name ending in `Exception`, `Error` or `Throwable`
//!     before `:` or at the end: `java.lang.IllegalStateException: ...`, `Exception in thread
//!     "main" java.lang.Error`, a log line ending `... RuntimeException: message`) begins a record that takes `at ...`, `Caused by: ...`, `Suppressed: ...` and
//!     `... N more` / `... N common frames omitted` lines;
//!   - `python`: `Traceback (most recent call last):` begins a record that takes the indented
//!     frame lines, the exception line after them, and chained tracebacks (the blank line, `During
//!     handling of the above exception ...` or `The above exception was the direct cause ...`, the
//!     blank line and the next `Traceback`), exception groups' tracebacks included;
//!   - `go`: `panic: ...`, `fatal error: ...` or net/http's `http: panic serving ...` begins a record that takes blank lines, `[signal
//!     ...]`, `goroutine N [...]:` headers, function lines, tab-indented file lines and `created by
//!     ...` lines;
//!   - `indented`: a line that starts with a space or a tab joins the record before it.
//!
//! Guarantees: a line that no preset rule can continue is [`Step::Alone`], so the caller sends it
//! at once instead of waiting for the next line or a timeout; only records that may still grow
//! wait. Not done: a trace's header joined to the log line printed just before it (each is its
//! own record, as Fluent Bit's presets do); a Java exception message spanning several lines
//! (its second line begins a record of its own); a blank line after a Python traceback that no
//! chained traceback follows stays in the traceback's record.

use crate::javaregex::JavaRegex;
use regex::Regex;
use std::sync::LazyLock;

/// The built-in rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    Java,
    Python,
    Go,
    Indented,
}

impl Preset {
    pub const ALL: [(&'static str, Preset); 4] =
        [("java", Preset::Java), ("python", Preset::Python), ("go", Preset::Go), ("indented", Preset::Indented)];

    pub fn name(self) -> &'static str {
        Preset::ALL.iter().find(|(_, p)| *p == self).map_or("", |(n, _)| n)
    }
}

/// How a flow's lines are grouped into records.
#[derive(Debug, Clone, PartialEq)]
pub enum MultiLineRule {
    Start(JavaRegex),
    Continuation(JavaRegex),
    /// One preset or several (the first whose rule a line begins a record of takes it).
    Presets(Vec<Preset>),
}

/// Where a record waiting for more lines stands: what may come next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// Pattern rules and `indented`: whatever the rule says, from any line.
    Open,
    /// After an exception's line: blank lines, frames, causes, `nested exception is:`.
    JavaHeader,
    /// After a frame.
    JavaTrace,
    /// After `nested exception is:`: the nested exception's line.
    JavaNested,
    PythonFrames,
    /// Inside an exception group's traceback, all of whose lines are indented.
    PythonGroup,
    PythonEnded,
    PythonBlank,
    PythonCause,
    PythonCauseBlank,
    GoPanic,
    GoFrames,
}

/// What one line does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// It joins the waiting record, which is then in this state.
    Join(GroupState),
    /// The waiting record (if any) is complete; this line begins one that may grow.
    Begin(GroupState),
    /// The waiting record (if any) is complete; this line is a record by itself, complete too.
    Alone,
}

impl MultiLineRule {
    pub fn describe(&self) -> String {
        match self {
            MultiLineRule::Start(p) => format!("records starting at lines matching {:?}", p.as_str()),
            MultiLineRule::Continuation(p) => format!("lines matching {:?} joining the record before them", p.as_str()),
            MultiLineRule::Presets(p) if p.len() == 1 => format!("the {} preset", p[0].name()),
            MultiLineRule::Presets(p) => format!("the {} presets", p.iter().map(|p| p.name()).collect::<Vec<_>>().join(", ")),
        }
    }

    /// What `line` does, the record waiting for more being in state `open` (`None`: no record
    /// waits). `line` may end with its line break.
    pub fn step(&self, open: Option<GroupState>, line: &str) -> Step {
        match self {
            MultiLineRule::Start(p) => match open {
                Some(_) if !p.prefix_match(line) => Step::Join(GroupState::Open),
                _ => Step::Begin(GroupState::Open),
            },
            MultiLineRule::Continuation(p) => match open {
                Some(_) if p.prefix_match(line) => Step::Join(GroupState::Open),
                _ => Step::Begin(GroupState::Open),
            },
            MultiLineRule::Presets(presets) => {
                let line = line.strip_suffix('\n').unwrap_or(line);
                let line = line.strip_suffix('\r').unwrap_or(line);
                if let Some(next) = open.and_then(|s| continues(s, line)) {
                    return Step::Join(next);
                }
                presets.iter().find_map(|p| begins(*p, line)).map_or(Step::Alone, Step::Begin)
            }
        }
    }
}

/// A name ending in Exception, Error or Throwable before `:` or at the end of the line:
/// `java.lang.IllegalStateException: boom`, `Exception in thread "main" java.lang.Error`, or a
/// log line naming one (`... MakeLog: RuntimeException: message`).
static JAVA_EXCEPTION: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[\w$](?:Exception|Error|Throwable)(?::|\z)").expect("a valid pattern"));

/// A Go stack frame's function line: `main.main()`, `net/http.(*conn).serve(0xc000, ...)`,
/// with an optional `...` for elided arguments.
static GO_FUNCTION: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\A[\w./*()\[\]-]*[\w\])]\((?:[^()]*)\)(?: \.\.\.)?\z").expect("a valid pattern"));

static GO_GOROUTINE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\Agoroutine \d+ \[[^\]]*\]:\z").expect("a valid pattern"));

const TRACEBACK: &str = "Traceback (most recent call last):";

fn begins(preset: Preset, line: &str) -> Option<GroupState> {
    match preset {
        Preset::Indented => Some(GroupState::Open),
        Preset::Java => is_java_exception(line).then_some(GroupState::JavaHeader),
        Preset::Python => python_traceback(line),
        Preset::Go => (line.starts_with("panic: ") || line.starts_with("fatal error: ") || line.contains(" http: panic serving "))
            .then_some(GroupState::GoPanic),
    }
}

fn is_java_exception(line: &str) -> bool {
    (line.contains("Exception") || line.contains("Error") || line.contains("Throwable")) && JAVA_EXCEPTION.is_match(line)
}

/// What may join a record in `state` (each state belongs to one preset; `Open` to `indented`).
fn continues(state: GroupState, line: &str) -> Option<GroupState> {
    use GroupState::*;
    let indented = line.starts_with([' ', '\t']);
    match state {
        Open => indented.then_some(Open),
        JavaNested => is_java_exception(line).then_some(JavaHeader),
        JavaHeader | JavaTrace => {
            let t = line.trim_start_matches([' ', '\t']);
            if (indented && t.starts_with("at ")) || is_elided_java_frames(t) {
                Some(JavaTrace)
            } else if t.starts_with("Caused by: ") || t.starts_with("Suppressed: ") || (state == JavaHeader && line.is_empty()) {
                Some(JavaHeader)
            } else {
                (t == "nested exception is:").then_some(JavaNested)
            }
        }
        PythonFrames => match line {
            _ if indented => Some(PythonFrames),
            "" => None,
            // the exception line closes the frames
            _ => Some(PythonEnded),
        },
        PythonEnded => line.is_empty().then_some(PythonBlank),
        PythonBlank => (line == "During handling of the above exception, another exception occurred:"
            || line == "The above exception was the direct cause of the following exception:")
            .then_some(PythonCause),
        PythonCause => line.is_empty().then_some(PythonCauseBlank),
        PythonCauseBlank => python_traceback(line),
        PythonGroup => indented.then_some(PythonGroup),
        GoPanic => {
            if line.is_empty() || indented || line.starts_with("[signal ") || line.starts_with("panic: ") {
                Some(GoPanic)
            } else {
                is_go_frame_line(line).then_some(GoFrames)
            }
        }
        GoFrames => (line.is_empty() || is_go_frame_line(line)).then_some(GoFrames),
    }
}

/// A traceback's first line: `Traceback (most recent call last):`, or an exception group's.
fn python_traceback(line: &str) -> Option<GroupState> {
    if line == TRACEBACK {
        Some(GroupState::PythonFrames)
    } else {
        (line.trim_start_matches(' ') == "+ Exception Group Traceback (most recent call last):").then_some(GroupState::PythonGroup)
    }
}

fn is_elided_java_frames(t: &str) -> bool {
    let Some(rest) = t.strip_prefix("... ") else { return false };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    digits > 0 && matches!(&rest[digits..], " more" | " common frames omitted")
}

fn is_go_frame_line(line: &str) -> bool {
    line.starts_with('\t')
        || line.starts_with("created by ")
        || line == "runtime stack:"
        || line == "...additional frames elided..."
        || GO_GOROUTINE.is_match(line)
        || GO_FUNCTION.is_match(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Groups `text`'s lines as an assembler would: each record is its lines joined.
    fn group(rule: &MultiLineRule, text: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut open: Option<(GroupState, String)> = None;
        for line in text.split_inclusive('\n') {
            match rule.step(open.as_ref().map(|(s, _)| *s), line) {
                Step::Join(s) => {
                    let (state, buf) = open.as_mut().expect("a join has a record to join");
                    *state = s;
                    buf.push_str(line);
                }
                Step::Begin(s) => {
                    out.extend(open.take().map(|(_, b)| b));
                    open = Some((s, line.to_string()));
                }
                Step::Alone => {
                    out.extend(open.take().map(|(_, b)| b));
                    out.push(line.to_string());
                }
            }
        }
        out.extend(open.map(|(_, b)| b));
        out
    }

    #[test]
    fn start_pattern_never_tests_the_first_line() {
        let rule = MultiLineRule::Start(JavaRegex::new(r"\d{4}-").unwrap());
        assert_eq!(group(&rule, "  orphan\n2024-01 a\n  at x\n2024-02 b\n"), ["  orphan\n", "2024-01 a\n  at x\n", "2024-02 b\n"]);
    }

    #[test]
    fn continuation_pattern_joins_matching_lines_to_the_record_before() {
        let rule = MultiLineRule::Continuation(JavaRegex::new(r"\s+|\}").unwrap());
        assert_eq!(group(&rule, "a {\n  b\n}\nc\n  d\n"), ["a {\n  b\n}\n", "c\n  d\n"]);
    }

    #[test]
    fn java_traces_take_causes_and_elided_frames_and_leave_log_lines_alone() {
        let rule = MultiLineRule::Presets(vec![Preset::Java]);
        let text = "INFO started\n\
            java.lang.IllegalStateException: boom\n\
            \tat com.example.App.run(App.java:10)\n\
            Caused by: java.io.IOException: disk\n\
            \tat com.example.Io.read(Io.java:3)\n\
            \t... 4 more\n\
            INFO next\n\
            Exception in thread \"main\" java.lang.NullPointerException\n\
            \tat Main.main(Main.java:1)\n\
            \tSuppressed: java.lang.Exception: also\n\
            \t\tat Main.close(Main.java:2)\n\
            \t... 1 common frames omitted\n\
            Error: not a trace\n\
            INFO done\n";
        let got = group(&rule, text);
        assert_eq!(got.len(), 6, "{got:#?}");
        assert_eq!(got[0], "INFO started\n");
        assert!(got[1].starts_with("java.lang.IllegalStateException") && got[1].ends_with("... 4 more\n"));
        assert!(got[3].starts_with("Exception in thread") && got[3].ends_with("omitted\n"));
        assert_eq!(got[4], "Error: not a trace\n");
        assert_eq!(rule.step(None, "INFO started\n"), Step::Alone, "a log line is sent at once");
    }

    #[test]
    fn python_tracebacks_take_their_exception_line_and_chained_tracebacks() {
        let rule = MultiLineRule::Presets(vec![Preset::Python]);
        let text = "ERROR:root:failed\n\
            Traceback (most recent call last):\n  File \"a.py\", line 1, in <module>\n    f()\n\
            KeyError: 'x'\n\
            \n\
            During handling of the above exception, another exception occurred:\n\
            \n\
            Traceback (most recent call last):\n  File \"a.py\", line 3, in <module>\n\
            ValueError: y\n\
            INFO:root:after\n";
        let got = group(&rule, text);
        assert_eq!(got.len(), 3, "{got:#?}");
        assert!(got[1].starts_with("Traceback") && got[1].ends_with("ValueError: y\n"));
        assert_eq!(got[2], "INFO:root:after\n");
    }

    #[test]
    fn go_panics_take_goroutines_and_frames() {
        let rule = MultiLineRule::Presets(vec![Preset::Go]);
        let text = "starting\n\
            panic: runtime error: index out of range [3] with length 1\n\
            \n\
            goroutine 1 [running]:\n\
            main.(*T).get(...)\n\
            \t/src/main.go:8\n\
            main.main()\n\
            \t/src/main.go:12 +0x1d\n\
            \n\
            goroutine 6 [chan receive]:\n\
            net/http.(*conn).serve(0xc000120000, {0x6f0c38, 0xc00009c000})\n\
            \t/usr/local/go/src/net/http/server.go:1995 +0x612\n\
            created by net/http.(*Server).Serve in goroutine 1\n\
            \t/usr/local/go/src/net/http/server.go:3089 +0x5ed\n\
            exit status 2\n";
        let got = group(&rule, text);
        assert_eq!(got.len(), 3, "{got:#?}");
        assert!(got[1].starts_with("panic: ") && got[1].ends_with("+0x5ed\n"));
        assert_eq!(got[2], "exit status 2\n");
    }

    /// Stack traces from real projects' logs and tests (see tests/data/stacktraces/NOTICE.md),
    /// between ordinary log lines: each trace is one record, each log line one.
    #[test]
    fn presets_group_real_stack_traces_as_expected() {
        let expected: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/data/stacktraces/expected.json")).expect("valid JSON");
        for (name, preset, text) in [
            ("java", Preset::Java, include_str!("../../tests/data/stacktraces/java.log")),
            ("python", Preset::Python, include_str!("../../tests/data/stacktraces/python.log")),
            ("go", Preset::Go, include_str!("../../tests/data/stacktraces/go.log")),
        ] {
            let got: Vec<String> =
                group(&MultiLineRule::Presets(vec![preset]), text).iter().map(|r| r.trim_end_matches('\n').to_string()).collect();
            let want: Vec<String> =
                expected[name].as_array().expect("a list").iter().map(|r| r.as_str().expect("a string").to_string()).collect();
            for (k, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_eq!(g, w, "{name}: record {k} differs");
            }
            assert_eq!(got.len(), want.len(), "{name}: {} records, {} expected", got.len(), want.len());
        }
        // the three presets together group the three logs one after another as each alone does
        let all = [
            include_str!("../../tests/data/stacktraces/java.log"),
            include_str!("../../tests/data/stacktraces/python.log"),
            include_str!("../../tests/data/stacktraces/go.log"),
        ]
        .concat();
        let got = group(&MultiLineRule::Presets(vec![Preset::Java, Preset::Python, Preset::Go]), &all);
        let want: Vec<&str> =
            ["java", "python", "go"].iter().flat_map(|n| expected[n].as_array().expect("a list")).map(|v| v.as_str().unwrap()).collect();
        assert_eq!(got.iter().map(|r| r.trim_end_matches('\n')).collect::<Vec<_>>(), want);
    }

    #[test]
    fn indented_lines_join_the_record_before() {
        let rule = MultiLineRule::Presets(vec![Preset::Indented]);
        assert_eq!(group(&rule, "a\n b\n\tc\nd\n"), ["a\n b\n\tc\n", "d\n"]);
    }
}
