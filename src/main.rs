//! The `logferry` command line.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use logferry::config::{self, Assembly, Compression, Config, ConfigFormat, Flow, InitialPosition, Oversized, PathRules};
use logferry::convert::ec2::{self, Ec2MetadataHandle};
use logferry::convert::ChainContext;
use logferry::engine::{Engine, Event};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "logferry", version, about = "Tails rotating log files and ships them to Kinesis Data Firehose or Kinesis Data Streams")]
struct Cli {
    /// Log as JSON lines instead of text.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent.
    Run {
        /// agent.json (Kinesis Agent format) or a native .yaml/.yml file.
        #[arg(short, long, default_value = "/etc/logferry/logferry.yaml")]
        config: PathBuf,
        /// Serve /metrics, /health, /ready and /status on this address (overrides `http.listen`).
        #[arg(long, value_name = "ADDR:PORT")]
        listen: Option<String>,
    },
    /// Validate a configuration and print the flows it resolves to (exit 0 when valid, 1 if not).
    Check {
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Print, one JSON string per line, the records a flow would send for each FILE.
    Preview {
        #[arg(short, long)]
        config: PathBuf,
        /// Flow id (may be left out when the configuration has one flow).
        #[arg(long)]
        flow: Option<String>,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// A live view of a running agent (per flow: lines per second, bytes behind, retries, last
    /// error), read from its HTTP endpoint (`http.listen` or `run --listen`).
    Top {
        /// The agent's endpoint.
        #[arg(long, default_value = "http://127.0.0.1:9464")]
        url: String,
        /// Print one table (rates over one interval) and exit.
        #[arg(long)]
        once: bool,
        /// Seconds between readings (0.1 to 3600).
        #[arg(long, default_value = "1", value_parser = interval_seconds)]
        interval: std::time::Duration,
    },
    /// Print the native YAML equivalent of a Kinesis Agent agent.json.
    Migrate { path: PathBuf },
    /// List saved positions (flow, path, identity, offset, bytes behind, last update), or forget
    /// some with --reset (refused while an agent runs on the database: it would write them back).
    Checkpoints {
        #[arg(short, long)]
        config: PathBuf,
        /// Forget the positions of this flow (all its files, or the one given with --path).
        #[arg(long, value_name = "FLOW")]
        reset: Option<String>,
        /// With --reset: only this file's position.
        #[arg(long, requires = "reset")]
        path: Option<String>,
        /// With --reset: do not ask for confirmation.
        #[arg(long, requires = "reset")]
        yes: bool,
    },
}

/// `top --interval`: seconds, from 0.1 to an hour.
fn interval_seconds(s: &str) -> Result<std::time::Duration, String> {
    let v: f64 = s.parse().map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(0.1..=3600.0).contains(&v) {
        return Err(format!("{s} is not between 0.1 and 3600 seconds"));
    }
    Ok(std::time::Duration::from_secs_f64(v))
}

/// The agent's own log on stderr: `RUST_LOG` if set, else `level` (the configuration's), else info.
fn init_logging(json: bool, level: Option<&str>) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level.unwrap_or("info")));
    // colours only on a terminal: journald and log files get plain text
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let b = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    if json {
        b.json().init();
    } else {
        b.init();
    }
}

fn main() -> ExitCode {
    // the host's UTC offset can be read safely only while the process has one thread
    logferry::convert::journal::read_host_offset();
    let cli = Cli::parse();
    match &cli.command {
        // the configuration says how the agent logs; loading it again below reports its problems
        Command::Run { config, .. } => {
            let cfg = config::load(config).ok();
            let json = cli.log_json || cfg.as_ref().is_some_and(|c| c.log_json);
            init_logging(json, cfg.as_ref().and_then(|c| c.log_level.as_deref()));
        }
        _ => init_logging(cli.log_json, None),
    }
    let result = match cli.command {
        Command::Run { config, listen } => run(&config, listen),
        Command::Top { url, once, interval } => match logferry::ops::top::run(&url, interval, once) {
            Ok(()) => Ok(ExitCode::SUCCESS),
            Err(e) => {
                eprintln!("logferry top: {e}");
                Ok(ExitCode::FAILURE)
            }
        },
        Command::Check { config } => check(&config),
        Command::Preview { config, flow, files } => preview(&config, flow.as_deref(), &files),
        Command::Migrate { path } => migrate(&path),
        Command::Checkpoints { config, reset, path, yes } => checkpoints(&config, reset.as_deref(), path.as_deref(), yes),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("logferry: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Loads a configuration, printing warnings; errors are printed and turned into exit status 1.
fn load(path: &Path) -> Result<Option<Config>> {
    match config::load(path) {
        Ok(cfg) => {
            for w in &cfg.warnings {
                tracing::warn!("{w}");
            }
            Ok(Some(cfg))
        }
        Err(failed) => {
            for w in &failed.warnings {
                tracing::warn!("{w}");
            }
            for e in &failed.errors {
                eprintln!("error: {e}");
            }
            let n = failed.errors.len();
            let plural = if n == 1 { "" } else { "s" };
            eprintln!("logferry: the configuration {} was refused ({n} error{plural})", path.display());
            Ok(None)
        }
    }
}

/// The proxy for AWS: `HTTPS_PROXY` as set, or else the one a Kinesis Agent host's `JVM_ARGS`
/// names (its service reads `/etc/sysconfig/aws-kinesis-agent`); either way instance metadata
/// bypasses it (`NO_PROXY`). Called at start, before any thread or client exists.
fn proxy_environment() {
    let set = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let mut proxied =
        set("HTTPS_PROXY").or_else(|| set("https_proxy")).or_else(|| set("HTTP_PROXY")).or_else(|| set("http_proxy")).is_some();
    if !proxied {
        if let Some(p) = set("JVM_ARGS").and_then(|a| config::proxy::from_jvm_args(&a)) {
            let except = p.no_proxy.as_ref().map(|n| format!(", except for {n} (-Dhttp.nonProxyHosts)")).unwrap_or_default();
            tracing::info!("AWS requests go through the proxy {} that JVM_ARGS names (-Dhttps.proxyHost, -Dhttps.proxyPort), as the Kinesis Agent's did{except}", p.https_proxy);
            std::env::set_var("HTTPS_PROXY", &p.https_proxy);
            if let (Some(n), None, None) = (&p.no_proxy, set("NO_PROXY"), set("no_proxy")) {
                std::env::set_var("NO_PROXY", n);
            }
            proxied = true;
        }
    }
    if proxied {
        let rules = config::proxy::no_proxy_with_metadata(set("NO_PROXY").or_else(|| set("no_proxy")).as_deref());
        std::env::set_var("NO_PROXY", &rules);
        std::env::set_var("no_proxy", &rules);
    }
}

/// Finds the host's region (the SDK's chain) when a flow sending to AWS, or CloudWatch in the
/// native format, names neither a region nor an endpoint; those still without one, with what
/// they send to.
fn find_host_region(cfg: &mut Config) -> Vec<String> {
    let unresolved = |cfg: &Config| -> Vec<String> {
        // held flows too: a reload that fixes one starts it with the region found now
        cfg.flows
            .iter()
            .chain(cfg.held.iter().map(|h| &h.flow))
            .filter_map(|f| {
                logferry::sinks::aws_target(&f.sink(cfg))
                    .filter(|(t, _)| t.region.is_empty())
                    .map(|(t, what)| format!("flow {} ({what} {})", f.id, t.stream))
            })
            .chain(
                logferry::ops::cloudwatch::target(cfg)
                    .filter(|t| t.region.is_empty())
                    .map(|_| "CloudWatch metrics (or set cloudwatch.region)".to_string()),
            )
            .collect()
    };
    if unresolved(cfg).is_empty() {
        return Vec::new();
    }
    cfg.aws.host_region = logferry::sinks::aws::host_region();
    unresolved(cfg)
}

fn run(path: &Path, listen: Option<String>) -> Result<ExitCode> {
    proxy_environment();
    let Some(mut cfg) = load(path)? else { return Ok(ExitCode::FAILURE) };
    if listen.is_some() {
        cfg.http.listen = listen;
    }
    let no_region = find_host_region(&mut cfg);
    if !no_region.is_empty() {
        eprintln!("logferry: no region for {}: {}", no_region.join(", "), logferry::sinks::aws::NO_REGION_ADVICE);
        return Ok(ExitCode::FAILURE);
    }
    for n in cfg.start_notices() {
        tracing::info!("{n}");
    }
    for w in logferry::source::discover::own_file_overlaps(&cfg) {
        tracing::warn!("{w}");
    }
    let ctx = chain_context(&cfg, true);
    let flows = cfg.flows.len();
    let held = cfg.held.len();
    let http = cfg.http.clone();
    let cloudwatch_cfg = cfg.clone();
    let engine = Engine::new(cfg, ctx)?;
    if let Some(addr) = &http.listen {
        let bound = logferry::ops::endpoint::spawn(addr, engine.metrics(), http.unhealthy_after_secs.saturating_mul(1000))
            .with_context(|| format!("cannot listen on {addr} for /metrics and /health"))?;
        tracing::info!("serving /metrics, /health, /ready and /status on http://{bound}");
    }
    logferry::ops::cloudwatch::spawn(&cloudwatch_cfg, engine.metrics()).context("cannot start the CloudWatch publisher")?;
    notify_systemd(engine.metrics());
    let stop = engine.stopper();
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    // the first SIGTERM or SIGINT stops gracefully (what was read is sent and acknowledged,
    // up to shutdown_timeout_ms); a second stops at once, saying what was not acknowledged; if
    // the engine does not end within a few seconds of that, or at a third, the process exits
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        let mut stops = 0;
        for sig in signals.forever() {
            if sig == SIGHUP {
                tracing::info!("SIGHUP: loading the configuration again");
                let _ = stop.send(Event::Reload);
                continue;
            }
            let name = if sig == SIGTERM { "SIGTERM" } else { "SIGINT" };
            stops += 1;
            match stops {
                1 => {
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
                    let _ = stop.send(Event::Stop(name));
                }
                2 => {
                    tracing::warn!("{name} again: stopping at once");
                    let _ = stop.send(Event::StopNow(name));
                    let _ = std::thread::Builder::new().name("exit-timer".into()).spawn(|| {
                        std::thread::sleep(std::time::Duration::from_secs(5));
                        tracing::error!("the engine did not stop within 5 s of the second signal: exiting; what was not acknowledged is read again at the next start");
                        std::process::exit(130);
                    });
                }
                _ => {
                    tracing::error!("{name} a third time: exiting now; what was not acknowledged is read again at the next start");
                    std::process::exit(130);
                }
            }
        }
    })?;
    let held = if held > 0 { format!(" ({held} more held back, not started: see above)") } else { String::new() };
    tracing::info!("logferry {} running {flows} flow{}{held}", env!("CARGO_PKG_VERSION"), if flows == 1 { "" } else { "s" });
    engine.run()?;
    Ok(ExitCode::SUCCESS)
}

/// Under systemd (`Type=notify`): READY=1 once every flow has made its first scan, and, with
/// `WatchdogSec=`, WATCHDOG=1 while the engine makes passes: a wedged engine stops the pings and
/// systemd restarts the service. Nothing happens without `NOTIFY_SOCKET`.
fn notify_systemd(metrics: std::sync::Arc<logferry::ops::metrics::Metrics>) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    let watchdog = sd_notify::watchdog_enabled();
    let every = watchdog.map_or(std::time::Duration::from_millis(200), |w| (w / 3).min(std::time::Duration::from_secs(5)));
    let _ = std::thread::Builder::new().name("systemd".into()).spawn(move || {
        let mut ready = false;
        loop {
            if !ready && metrics.is_ready() {
                ready = true;
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready, sd_notify::NotifyState::Status("shipping")]);
                if watchdog.is_none() {
                    return;
                }
            }
            if ready && metrics.heartbeat_age_ms() < logferry::ops::endpoint::WEDGED_AFTER_MS {
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
            }
            std::thread::sleep(if ready { every } else { std::time::Duration::from_millis(200) });
        }
    });
}

/// The converters' context: EC2 metadata when a flow asks for it, refreshed on its TTL.
fn chain_context(cfg: &Config, keep_fresh: bool) -> ChainContext {
    let mut ctx = ChainContext::default();
    // one fetch serves every flow: tags when any flow wants them, refreshed at the shortest TTL
    let wanted = cfg.flows.iter().chain(cfg.held.iter().map(|h| &h.flow)).flat_map(|f| &f.processors).filter_map(|p| match p {
        logferry::convert::ProcessorSpec::AddEc2Metadata { ttl_secs, tags, .. } => Some((*ttl_secs, *tags)),
        _ => None,
    });
    let Some((ttl, tags)) = wanted.reduce(|(t1, g1), (t2, g2)| (t1.min(t2), g1 || g2)) else { return ctx };
    let handle = Ec2MetadataHandle::default();
    let fetch_once = move |handle: &Ec2MetadataHandle| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build();
        match rt.map(|rt| rt.block_on(ec2::fetch(tags))) {
            Ok(Ok(m)) => handle.set(Some(m)),
            Ok(Err(e)) => tracing::info!("ADDEC2METADATA: {e}; records pass through unchanged"),
            Err(e) => tracing::warn!("ADDEC2METADATA: {e}"),
        }
    };
    fetch_once(&handle);
    if keep_fresh {
        let h = handle.clone();
        let _ = std::thread::Builder::new().name("ec2-metadata".into()).spawn(move || loop {
            std::thread::sleep(std::time::Duration::from_secs(ttl));
            fetch_once(&h);
        });
    }
    ctx.ec2 = Some(handle);
    ctx
}

fn checkpoints(path: &Path, reset: Option<&str>, file: Option<&str>, yes: bool) -> Result<ExitCode> {
    let Some(cfg) = load(path)? else { return Ok(ExitCode::FAILURE) };
    if let Some(flow) = reset {
        // a running agent would write its positions back: resetting takes the agent's lock
        let mut store = logferry::checkpoint::Store::open(&cfg.checkpoint_file)?;
        let rows: Vec<_> = store.rows(Some(flow))?.into_iter().filter(|r| file.is_none_or(|p| r.path == p)).collect();
        if rows.is_empty() {
            bail!(
                "no saved position for flow {flow:?}{} in {}",
                file.map(|p| format!(" and file {p}")).unwrap_or_default(),
                cfg.checkpoint_file.display()
            );
        }
        if !yes {
            use std::io::{BufRead, IsTerminal};
            if !std::io::stdin().is_terminal() {
                bail!("--reset asks for confirmation on a terminal; add --yes to reset without asking");
            }
            eprint!(
                "Forget {} position{} of flow {flow:?}? Those files are then read again as new files. [y/N] ",
                rows.len(),
                if rows.len() == 1 { "" } else { "s" }
            );
            let mut answer = String::new();
            std::io::stdin().lock().read_line(&mut answer)?;
            if !answer.trim().eq_ignore_ascii_case("y") {
                eprintln!("nothing changed");
                return Ok(ExitCode::FAILURE);
            }
        }
        let n = store.reset(flow, file)?;
        println!("forgot {n} position{}", if n == 1 { "" } else { "s" });
        return Ok(ExitCode::SUCCESS);
    }
    let store = logferry::checkpoint::Store::open_unlocked(&cfg.checkpoint_file)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{:<40} {:<50} {:<28} {:>14} {:>14} UPDATED", "FLOW", "PATH", "FILE ID", "OFFSET", "BEHIND")?;
    for r in store.rows(None)? {
        let behind = match logferry::engine::current_size(Path::new(&r.path), r.key) {
            Some(size) => size.saturating_sub(r.offset).to_string(),
            None => "gone".into(),
        };
        let updated =
            time::OffsetDateTime::from_unix_timestamp(r.updated_at).map(logferry::convert::text::format_millis_utc).unwrap_or_default();
        writeln!(out, "{:<40} {:<50} {:<28} {:>14} {:>14} {updated}", r.flow, r.path, r.key.kinesis_agent_id(), r.offset, behind)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn check(path: &Path) -> Result<ExitCode> {
    let Some(mut cfg) = load(path)? else {
        return Ok(ExitCode::FAILURE);
    };
    // the region each AWS flow sends to, and which link decided it, is in its destination line
    find_host_region(&mut cfg);
    let mut out = std::io::stdout().lock();
    let fmt = match cfg.format {
        ConfigFormat::KinesisAgent => "Kinesis Agent agent.json",
        ConfigFormat::Native => "native YAML",
    };
    writeln!(out, "configuration: {} ({fmt})", cfg.path.display())?;
    writeln!(out, "checkpoints: {} (rows not updated for {} days are removed)", cfg.checkpoint_file.display(), cfg.checkpoint_ttl_days)?;
    match logferry::ops::cloudwatch::target(&cfg) {
        Some(t) => {
            let where_ = match &t.endpoint {
                _ if t.region.is_empty() => format!("no region here: run refuses to start; {}", logferry::sinks::aws::NO_REGION_ADVICE),
                Some(e) => format!("{} through {e}, region from {}", t.region, t.region_from),
                None => format!("{}, from {}", t.region, t.region_from),
            };
            writeln!(out, "cloudwatch: metrics on, namespace {}, to {where_}", cfg.cloudwatch.namespace)?;
        }
        None => writeln!(out, "cloudwatch: metrics off")?,
    }
    for n in cfg.start_notices() {
        writeln!(out, "note: {n}")?;
    }
    for w in logferry::source::discover::own_file_overlaps(&cfg) {
        writeln!(out, "warning: {w}")?;
    }
    for f in &cfg.flows {
        describe_flow(&mut out, &cfg, f)?;
    }
    for h in &cfg.held {
        describe_flow(&mut out, &cfg, &h.flow)?;
        for p in &h.problems {
            writeln!(out, "  NOT STARTED: {p}")?;
        }
        writeln!(out, "  (run starts the other flows and leaves this one's files unread, nothing lost, until a reload with it fixed)")?;
    }
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    if !cfg.held.is_empty() {
        let (n, h) = (cfg.flows.len(), cfg.held.len());
        writeln!(out, "FAILED: {n} flow{} would start, {h} flow{} would not (NOT STARTED above)", plural(n), plural(h))?;
        return Ok(ExitCode::FAILURE);
    }
    writeln!(out, "OK: {} flow{}", cfg.flows.len(), plural(cfg.flows.len()))?;
    Ok(ExitCode::SUCCESS)
}

/// One journald source in a line: what it reads, which entries, from where, as what.
fn describe_journal(j: &config::JournalSource) -> String {
    let mut s = match &j.directory {
        Some(d) => d.display().to_string(),
        None => "the system journal".into(),
    };
    if !j.units.is_empty() {
        s += &format!(", units {}", j.units.join(", "));
    }
    if let Some(p) = j.max_priority {
        s += &format!(", priority {p} ({}) and more urgent", config::JOURNAL_PRIORITIES[p as usize]);
    }
    for (field, value) in &j.matches {
        s += &format!(", {field}={value}");
    }
    if !j.kernel {
        s += ", no kernel messages";
    }
    if j.current_boot_only {
        s += ", this boot only";
    }
    s += &match j.start_at {
        config::JournalStart::Head => ", first start at its head".to_string(),
        config::JournalStart::Tail => ", first start at its end".to_string(),
        config::JournalStart::Since(t) => {
            format!(", first start at {}", logferry::convert::journal::rfc3339_micros(t.max(0) as u64 * 1_000_000))
        }
    };
    s += match j.shape {
        config::JournalShape::Fields => ", records: the entry's fields as JSON",
        config::JournalShape::Syslog => ", records: LOGTOJSON SYSLOG of the line rsyslog would write",
    };
    s
}

fn describe_flow(out: &mut impl Write, cfg: &Config, f: &Flow) -> std::io::Result<()> {
    writeln!(out, "flow {}", f.id)?;
    for s in &f.sources {
        let rule = match f.path_rules {
            PathRules::KinesisAgent => " (glob in the last component only; .gz/.bz2/.zip ignored)",
            PathRules::Native => "",
        };
        write!(out, "  files: {}{rule}", s.include)?;
        if !s.exclude.is_empty() {
            write!(out, " excluding {}", s.exclude.join(", "))?;
        }
        writeln!(out)?;
    }
    for j in &f.journals {
        writeln!(out, "  journal: {}", describe_journal(j))?;
    }
    if !f.sources.is_empty() {
        let pos = match f.initial_position {
            InitialPosition::StartOfFile => "START_OF_FILE",
            InitialPosition::EndOfFile => "END_OF_FILE",
        };
        writeln!(out, "  first start without a checkpoint: {pos}")?;
    }
    let facts = logferry::sinks::facts(&f.destination);
    let target = logferry::sinks::aws_target(&f.sink(cfg));
    let place = match &target {
        Some((t, _)) if t.region.is_empty() => format!("no region here: run refuses this flow; {}", logferry::sinks::aws::NO_REGION_ADVICE),
        Some((t, _)) => match &t.endpoint {
            Some(e) => format!("{} through {e}, region from {}", t.region, t.region_from),
            None => format!("{}, from {}", t.region, t.region_from),
        },
        None => "local".into(),
    };
    writeln!(out, "  destination: {} ({place})", facts.name)?;
    let framing = match &f.assembly {
        Assembly::Lines => "one record per line".to_string(),
        Assembly::MultiLine { rule } => {
            format!("multi-line: {} (sent after {} ms without a new line)", rule.describe(), f.multiline_flush_ms)
        }
        Assembly::Aggregate { max_bytes } => {
            format!("whole lines packed into records of up to {max_bytes} bytes")
        }
        Assembly::Container { format, include_namespaces, exclude_namespaces, multiline, metadata } => {
            let mut s = match multiline {
                Some(rule) => format!(
                    "container logs ({format:?}): partial lines merged, then multi-line per stream: {} (sent after {} ms without a new line of that stream); one JSON record each with the pod's identity",
                    rule.describe(),
                    f.multiline_flush_ms
                ),
                None => format!("container logs ({format:?}): partial lines merged, one JSON record per line with the pod's identity"),
            };
            if !include_namespaces.is_empty() {
                s += &format!("; namespaces {}", include_namespaces.join(", "));
            }
            if !exclude_namespaces.is_empty() {
                s += &format!("; not namespaces {}", exclude_namespaces.join(", "));
            }
            if let Some(m) = metadata {
                s += &format!("; {}", m.describe());
            }
            s
        }
    };
    let oversized = match f.oversized {
        Oversized::Truncate => format!("truncated with {:?}", String::from_utf8_lossy(&f.truncated_record_terminator)),
        Oversized::Split => "split into pieces that concatenate to the record".into(),
    };
    if f.sources.is_empty() {
        writeln!(out, "  records: one per journal entry; longer than {} bytes {oversized}", f.max_record_bytes)?;
    } else {
        writeln!(
            out,
            "  records: {framing}; {} header lines skipped; longer than {} bytes {oversized}",
            f.skip_header_lines, f.max_record_bytes
        )?;
    }
    if let (Some(aws), Some((t, _))) = (f.destination.aws(), &target) {
        let mut notes = facts.notes;
        match aws.compression {
            Compression::None => {}
            Compression::Gzip => notes.push("each record gzip-compressed".into()),
            Compression::Zstd => notes.push("each record zstd-compressed".into()),
        }
        notes.push(format!("records rejected as invalid go to {}", t.dead_letter.display()));
        writeln!(out, "  sending: {}", notes.join("; "))?;
    }
    for p in &f.processors {
        writeln!(out, "  processor: {}", p.describe())?;
    }
    writeln!(out, "  batches: up to {} records, {} bytes, {} ms", f.buffer.max_records, f.buffer.max_bytes, f.buffer.max_age_ms)?;
    Ok(())
}

fn preview(path: &Path, flow_id: Option<&str>, files: &[PathBuf]) -> Result<ExitCode> {
    let Some(cfg) = load(path)? else {
        return Ok(ExitCode::FAILURE);
    };
    // a held flow previews too: what it would do is why it is held
    let all: Vec<&Flow> = cfg.flows.iter().chain(cfg.held.iter().map(|h| &h.flow)).collect();
    let flow = match flow_id {
        Some(id) => match all.iter().find(|f| f.id == id) {
            Some(f) => *f,
            None => bail!("no flow {id:?} in {}; flows: {}", path.display(), flow_ids(&cfg)),
        },
        None if all.len() == 1 => all[0],
        None => bail!("{} has {} flows; choose one with --flow: {}", path.display(), all.len(), flow_ids(&cfg)),
    };
    if let Some(h) = cfg.held.iter().find(|h| h.flow.id == flow.id) {
        eprintln!("preview: flow {} is held back, not started by run: {}", flow.id, h.reason());
    }
    let ctx = chain_context(&Config { flows: vec![flow.clone()], ..cfg.clone() }, false);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut total = logferry::preview::Summary::default();
    for file in files {
        let f = std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
        let s = logferry::preview::preview_file(flow, ctx.clone(), Some(file), f, &mut out)
            .with_context(|| format!("reading {}", file.display()))?;
        total.records += s.records;
        total.dropped += s.dropped;
        total.truncated += s.truncated;
        total.split += s.split;
        total.processing_errors += s.processing_errors;
        total.fields_unparsed += s.fields_unparsed;
        total.runaway_lines += s.runaway_lines;
    }
    out.flush()?;
    eprintln!(
        "preview: {} records, {} dropped, {} truncated, {} split, {} processing errors (sent raw), {} with a field that did not parse (kept as it was), {} lines longer than {} bytes",
        total.records,
        total.dropped,
        total.truncated,
        total.split,
        total.processing_errors,
        total.fields_unparsed,
        total.runaway_lines,
        flow.max_line_bytes
    );
    Ok(ExitCode::SUCCESS)
}

fn flow_ids(cfg: &Config) -> String {
    cfg.flows.iter().chain(cfg.held.iter().map(|h| &h.flow)).map(|f| f.id.as_str()).collect::<Vec<_>>().join(", ")
}

fn migrate(path: &Path) -> Result<ExitCode> {
    if config::is_yaml_path(path) {
        bail!("{} is already a native YAML configuration", path.display());
    }
    let Some(cfg) = load(path)? else {
        return Ok(ExitCode::FAILURE);
    };
    print!("{}", config::migrate::to_native_yaml(&cfg));
    Ok(ExitCode::SUCCESS)
}
