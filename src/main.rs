//! The `logferry` command line.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use logferry::config::{self, Assembly, Config, ConfigFormat, Destination, Flow, InitialPosition, PathRules};
use logferry::convert::ec2::{self, Ec2MetadataHandle};
use logferry::convert::ChainContext;
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
    /// Print the native YAML equivalent of a Kinesis Agent agent.json.
    Migrate { path: PathBuf },
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        b.json().init();
    } else {
        b.init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_json);
    let result = match cli.command {
        Command::Run { config } => run(&config),
        Command::Check { config } => check(&config),
        Command::Preview { config, flow, files } => preview(&config, flow.as_deref(), &files),
        Command::Migrate { path } => migrate(&path),
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

fn run(path: &Path) -> Result<ExitCode> {
    let Some(cfg) = load(path)? else {
        return Ok(ExitCode::FAILURE);
    };
    for n in cfg.start_notices() {
        tracing::info!("{n}");
    }
    bail!(
        "`run` needs the tailing engine, which this build does not have yet; `logferry check` validates the configuration and `logferry preview` shows the records it would send"
    )
}

fn check(path: &Path) -> Result<ExitCode> {
    let Some(cfg) = load(path)? else {
        return Ok(ExitCode::FAILURE);
    };
    let mut out = std::io::stdout().lock();
    let fmt = match cfg.format {
        ConfigFormat::KinesisAgent => "Kinesis Agent agent.json",
        ConfigFormat::Native => "native YAML",
    };
    writeln!(out, "configuration: {} ({fmt})", cfg.path.display())?;
    writeln!(out, "checkpoints: {} (rows not updated for {} days are removed)", cfg.checkpoint_file.display(), cfg.checkpoint_ttl_days)?;
    if cfg.cloudwatch.emit_metrics {
        let where_ = cfg.cloudwatch.endpoint.clone().or(cfg.cloudwatch.region.clone()).unwrap_or_else(|| match cfg.format {
            ConfigFormat::KinesisAgent => "us-east-1 (default; set cloudwatch.endpoint)".into(),
            ConfigFormat::Native => "the region of the host".into(),
        });
        writeln!(out, "cloudwatch: metrics on, namespace {}, to {where_}", cfg.cloudwatch.namespace)?;
    } else {
        writeln!(out, "cloudwatch: metrics off")?;
    }
    for n in cfg.start_notices() {
        writeln!(out, "note: {n}")?;
    }
    for f in &cfg.flows {
        describe_flow(&mut out, &cfg, f)?;
    }
    writeln!(out, "OK: {} flow{}", cfg.flows.len(), if cfg.flows.len() == 1 { "" } else { "s" })?;
    Ok(ExitCode::SUCCESS)
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
    let pos = match f.initial_position {
        InitialPosition::StartOfFile => "START_OF_FILE",
        InitialPosition::EndOfFile => "END_OF_FILE",
    };
    writeln!(out, "  first start without a checkpoint: {pos}")?;
    let target = match &f.destination {
        Destination::Firehose { aws, .. } => {
            aws.endpoint.clone().or(aws.region.clone()).or(cfg.aws.firehose_endpoint.clone()).unwrap_or_else(|| match cfg.format {
                ConfigFormat::KinesisAgent => "us-east-1".into(),
                ConfigFormat::Native => "the host's region".into(),
            })
        }
        Destination::Kinesis { aws, .. } => aws
            .endpoint
            .clone()
            .or(aws.region.clone())
            .or(cfg.aws.kinesis_endpoint.clone())
            .or(cfg.aws.kinesis_region.clone())
            .unwrap_or_else(|| "the host's region".into()),
        _ => "local".into(),
    };
    writeln!(out, "  destination: {} ({target})", f.destination.describe())?;
    let framing = match &f.assembly {
        Assembly::Lines => "one record per line".to_string(),
        Assembly::MultiLine { start } => {
            format!("multi-line records starting at {:?} (sent after {} ms without a new line)", start.as_str(), f.multiline_flush_ms)
        }
        Assembly::Aggregate { max_bytes } => {
            format!("whole lines packed into records of up to {max_bytes} bytes")
        }
    };
    writeln!(
        out,
        "  records: {framing}; {} header lines skipped; longer than {} bytes truncated with {:?}",
        f.skip_header_lines,
        f.max_record_bytes,
        String::from_utf8_lossy(&f.truncated_record_terminator)
    )?;
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
    let flow = match flow_id {
        Some(id) => match cfg.flow(id) {
            Some(f) => f,
            None => bail!("no flow {id:?} in {}; flows: {}", path.display(), flow_ids(&cfg)),
        },
        None if cfg.flows.len() == 1 => &cfg.flows[0],
        None => bail!("{} has {} flows; choose one with --flow: {}", path.display(), cfg.flows.len(), flow_ids(&cfg)),
    };
    let mut ctx = ChainContext::default();
    if let Some(p) = flow.processors.iter().find(|p| p.needs_ec2_metadata()) {
        let tags = matches!(p, logferry::convert::ProcessorSpec::AddEc2Metadata { tags: true, .. });
        let handle = Ec2MetadataHandle::default();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        match rt.block_on(ec2::fetch(tags)) {
            Ok(m) => handle.set(Some(m)),
            Err(e) => tracing::info!("ADDEC2METADATA: {e}; records pass through unchanged"),
        }
        ctx.ec2 = Some(handle);
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut total = logferry::preview::Summary::default();
    for file in files {
        let f = std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
        let s = logferry::preview::preview(flow, ctx.clone(), f, &mut out).with_context(|| format!("reading {}", file.display()))?;
        total.records += s.records;
        total.dropped += s.dropped;
        total.truncated += s.truncated;
        total.processing_errors += s.processing_errors;
        total.runaway_lines += s.runaway_lines;
    }
    out.flush()?;
    eprintln!(
        "preview: {} records, {} dropped, {} truncated, {} processing errors (sent raw), {} lines longer than {} bytes",
        total.records, total.dropped, total.truncated, total.processing_errors, total.runaway_lines, flow.max_line_bytes
    );
    Ok(ExitCode::SUCCESS)
}

fn flow_ids(cfg: &Config) -> String {
    cfg.flows.iter().map(|f| f.id.as_str()).collect::<Vec<_>>().join(", ")
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
