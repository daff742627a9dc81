//! Diagnostics through `tracing`: one subscriber for the process, set by
//! the global `-v`/`-q`/`--log-*` flags and `LOCKSTEP_LOG`.
//!
//! Messages for people (what happened, in one line) still go to stderr as
//! they always did; the log carries the detail, with timestamps, levels and
//! the VM's span. It goes to stderr or `--log-file`, never to stdout, where
//! a stdio console writes the guest's bytes.

use clap::{Args, ValueEnum};
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// The environment variable holding a filter in `tracing`'s directive
/// syntax, e.g. `LOCKSTEP_LOG=info` or `LOCKSTEP_LOG=warn,lockstep_ft=debug`.
pub const LOG_ENV: &str = "LOCKSTEP_LOG";

#[derive(Args, Debug, Clone, Default)]
pub struct LogArgs {
    /// More log detail: -v info, -vv debug, -vvv trace (default: warnings).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Log errors only.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Log level: error, warn, info, debug or trace; overrides -v/-q and
    /// LOCKSTEP_LOG (which takes a full filter, e.g. `warn,lockstep_ft=debug`).
    #[arg(long, value_enum, global = true, env = "LOCKSTEP_LOG_LEVEL")]
    pub log_level: Option<Level>,
    /// Append the log to this file (created 0600) instead of stderr.
    #[arg(long, value_name = "PATH", global = true, env = "LOCKSTEP_LOG_FILE")]
    pub log_file: Option<PathBuf>,
    /// `text` (a timestamped line per event) or `json` (one object per line).
    #[arg(
        long,
        value_enum,
        default_value_t = Format::Text,
        global = true,
        env = "LOCKSTEP_LOG_FORMAT"
    )]
    pub log_format: Format,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl Level {
    fn directive(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
            Level::Trace => "trace",
        }
    }
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Text,
    Json,
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("--log-file {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{LOG_ENV}={value:?} is not a log filter: {reason}")]
    Filter { value: String, reason: String },
}

impl LogArgs {
    /// The filter these flags ask for: `--log-level`, then `-v`/`-q`, then
    /// `LOCKSTEP_LOG`, then warnings.
    fn filter(&self, env: Option<String>) -> Result<EnvFilter, LogError> {
        let level = self.log_level.or(match (self.quiet, self.verbose) {
            (true, _) => Some(Level::Error),
            (false, 0) => None,
            (false, 1) => Some(Level::Info),
            (false, 2) => Some(Level::Debug),
            (false, _) => Some(Level::Trace),
        });
        let directives = match (level, env) {
            (Some(level), _) => level.directive().to_string(),
            (None, Some(value)) if !value.trim().is_empty() => value,
            (None, _) => Level::Warn.directive().to_string(),
        };
        EnvFilter::builder()
            .parse(&directives)
            .map_err(|e| LogError::Filter {
                value: directives.clone(),
                reason: e.to_string(),
            })
    }
}

/// Where log lines go: stderr, or a file opened for appending. Each event
/// is written with one `write` so lines from threads never interleave.
#[derive(Clone)]
enum Sink {
    Stderr,
    File(Arc<Mutex<std::fs::File>>),
}

struct Line {
    sink: Sink,
    buf: Vec<u8>,
}

impl Write for Line {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        // A log line that can't be written is dropped: the log must never
        // stop the VM.
        match &self.sink {
            Sink::Stderr => {
                let _ = std::io::stderr().lock().write_all(&self.buf);
            }
            Sink::File(file) => {
                if let Ok(mut file) = file.lock() {
                    let _ = file.write_all(&self.buf);
                }
            }
        }
    }
}

impl<'a> MakeWriter<'a> for Sink {
    type Writer = Line;
    fn make_writer(&'a self) -> Line {
        Line {
            sink: self.clone(),
            buf: Vec::with_capacity(256),
        }
    }
}

/// Install the process's subscriber. Call once, first thing.
pub fn init(args: &LogArgs) -> Result<(), LogError> {
    let filter = args.filter(std::env::var(LOG_ENV).ok())?;
    let sink = match &args.log_file {
        None => Sink::Stderr,
        Some(path) => {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                .open(path)
                .map_err(|source| LogError::File {
                    path: path.clone(),
                    source,
                })?;
            Sink::File(Arc::new(Mutex::new(file)))
        }
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(sink)
        .with_ansi(false)
        .with_target(true)
        .with_thread_names(true);
    // A second init (tests calling main's parts) keeps the first.
    let _ = match args.log_format {
        Format::Text => builder.try_init(),
        Format::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .try_init(),
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(verbose: u8, quiet: bool, level: Option<Level>) -> LogArgs {
        LogArgs {
            verbose,
            quiet,
            log_level: level,
            ..LogArgs::default()
        }
    }

    #[test]
    fn flags_win_over_the_environment_and_warnings_are_the_default() {
        let show = |a: LogArgs, env: Option<&str>| {
            a.filter(env.map(str::to_string))
                .map(|f| f.to_string())
                .unwrap_or_else(|e| e.to_string())
        };
        assert_eq!(show(args(0, false, None), None), "warn");
        assert_eq!(show(args(1, false, None), None), "info");
        assert_eq!(show(args(2, false, None), Some("trace")), "debug");
        assert_eq!(show(args(9, false, None), None), "trace");
        assert_eq!(show(args(0, true, None), Some("info")), "error");
        assert_eq!(show(args(3, false, Some(Level::Warn)), None), "warn");
        assert_eq!(
            show(args(0, false, None), Some("warn,lockstep_ft=debug")),
            "lockstep_ft=debug,warn"
        );
        let bad = show(args(0, false, None), Some("lockstep_ft=loud"));
        assert!(bad.contains("LOCKSTEP_LOG"), "{bad}");
    }
}
