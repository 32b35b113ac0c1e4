//! Command-line definition (clap derive). The doc comments here become `--help` and the man pages.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::cmd::parse_duration;
use crate::ctx::Settings;
use crate::output::OutputFormat;

/// Keep a self-hosted Bitcoin node appliance converged: containers, configs, podman, updates.
///
/// Every subcommand is one-shot and idempotent: it takes a file lock, compares what should be
/// (manifests, the canonical secret) with what is (podman, files on disk), fixes the
/// difference and exits. Running it twice changes nothing the second time.
///
/// Exit codes: 0 success or nothing to do; 1 at least one unit of work failed (the others still
/// converged) or a check found a problem; 2 invalid input (bad manifest, bad flag, unreadable
/// file); 75 a lock stayed held by another archy run for longer than --lock-wait.
#[derive(Debug, Parser)]
#[command(
    name = "archy",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand understands.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Directory holding one YAML manifest per app (*.yaml).
    #[arg(
        long,
        global = true,
        env = "ARCHY_MANIFESTS",
        default_value = "/etc/archy/manifests",
        value_name = "DIR"
    )]
    pub manifests: PathBuf,
    /// Directory for archy's persistent state (secrets, status, update history).
    #[arg(
        long,
        global = true,
        env = "ARCHY_STATE_DIR",
        default_value = "/var/lib/archy",
        value_name = "DIR"
    )]
    pub state_dir: PathBuf,
    /// Directory for lock files.
    #[arg(
        long,
        global = true,
        env = "ARCHY_RUN_DIR",
        default_value = "/run/archy",
        value_name = "DIR"
    )]
    pub run_dir: PathBuf,
    /// The podman executable to run.
    #[arg(
        long,
        global = true,
        env = "ARCHY_PODMAN",
        default_value = "podman",
        value_name = "PATH"
    )]
    pub podman: PathBuf,
    /// Output format: human-readable text, one JSON document on stdout, or (`archy status`
    /// only) Prometheus metrics in the text exposition format.
    #[arg(long = "output", global = true, value_enum, default_value_t = OutputArg::Text)]
    pub output_arg: OutputArg,
    /// How long to wait for a lock held by another archy run before giving up with exit 75.
    #[arg(long, global = true, env = "ARCHY_LOCK_WAIT", default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub lock_wait: Duration,
    /// Name of the podman network archy creates and attaches apps to by default.
    #[arg(
        long,
        global = true,
        env = "ARCHY_NETWORK",
        default_value = "archy",
        value_name = "NAME"
    )]
    pub network: String,
    /// Subnet of that network (IPv4 /24 or wider); its first address is the gateway that
    /// `host.archipelago` resolves to inside containers.
    #[arg(
        long,
        global = true,
        env = "ARCHY_SUBNET",
        default_value = "10.89.0.0/24",
        value_name = "CIDR"
    )]
    pub subnet: String,
    /// Directory of Quadlet units for apps with `owner: systemd`: `archy quadlet` writes them
    /// there and `reconcile` and `status` check them.
    #[arg(
        long,
        global = true,
        env = "ARCHY_QUADLET_DIR",
        default_value = "/etc/containers/systemd",
        value_name = "DIR"
    )]
    pub quadlet_dir: PathBuf,
    /// Time limit of a listing or query command (`podman ps`, `inspect`, `info` …); past it
    /// the command's process group is killed and the run reports which command timed out.
    #[arg(long, global = true, env = "ARCHY_TIMEOUT_LISTING", default_value = "60s", value_parser = parse_duration, value_name = "DURATION")]
    pub timeout_listing: Duration,
    /// Added to an app's `stop_timeout` to give the time limit of creating, starting, stopping
    /// or removing its container.
    #[arg(long, global = true, env = "ARCHY_TIMEOUT_STOP_MARGIN", default_value = "60s", value_parser = parse_duration, value_name = "DURATION")]
    pub timeout_stop_margin: Duration,
    /// Time limit of one image build.
    #[arg(long, global = true, env = "ARCHY_TIMEOUT_BUILD", default_value = "10m", value_parser = parse_duration, value_name = "DURATION")]
    pub timeout_build: Duration,
    /// Time limit of an app's `restart_command`.
    #[arg(long, global = true, env = "ARCHY_TIMEOUT_RESTART_COMMAND", default_value = "2m", value_parser = parse_duration, value_name = "DURATION")]
    pub timeout_restart_command: Duration,
    /// Time limit of any other command (runc, ip, iptables, CNI plugins, umount).
    #[arg(long, global = true, env = "ARCHY_TIMEOUT_OTHER", default_value = "2m", value_parser = parse_duration, value_name = "DURATION")]
    pub timeout_other: Duration,
    /// Total time budget of one run: no command runs past it, so a run ends within
    /// `--lock-wait` + this (default 12m: below the timers' TimeoutStartSec=15min).
    #[arg(long, global = true, env = "ARCHY_TIME_BUDGET", default_value = "12m", value_parser = parse_duration, value_name = "DURATION")]
    pub time_budget: Duration,
    /// More log detail (-v debug, -vv trace). ARCHY_LOG overrides with a tracing filter.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only warnings and errors; no progress display.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

/// What `--output` accepts. `prometheus` (text exposition format) is for `archy status` only;
/// every other command sees `text` or `json` through [`OutputArg::format`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputArg {
    Text,
    Json,
    Prometheus,
}

impl OutputArg {
    /// The format for commands that print text or JSON (errors print as text).
    pub fn format(self) -> OutputFormat {
        match self {
            OutputArg::Json => OutputFormat::Json,
            OutputArg::Text | OutputArg::Prometheus => OutputFormat::Text,
        }
    }
}

/// The settings engines get: plain data, no clap below this file (as fd's `construct_config`).
impl From<&GlobalArgs> for Settings {
    fn from(g: &GlobalArgs) -> Self {
        Settings {
            manifests: g.manifests.clone(),
            state_dir: g.state_dir.clone(),
            run_dir: g.run_dir.clone(),
            podman: g.podman.clone(),
            output: g.output_arg.format(),
            prometheus: g.output_arg == OutputArg::Prometheus,
            lock_wait: g.lock_wait,
            network: g.network.clone(),
            subnet: g.subnet.clone(),
            quadlet_dir: g.quadlet_dir.clone(),
            timeout_listing: g.timeout_listing,
            quiet: g.quiet,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Reconcile(crate::cmd::reconcile::ReconcileArgs),
    BuildImage(crate::cmd::build_image::BuildImageArgs),
    RenderConfig(crate::cmd::render_config::RenderConfigArgs),
    HealPodman(crate::cmd::heal_podman::HealPodmanArgs),
    VerifyUpdate(crate::cmd::verify_update::VerifyUpdateArgs),
    Rollback(crate::cmd::rollback::RollbackArgs),
    Status(crate::cmd::status::StatusArgs),
    Quadlet(crate::cmd::quadlet::QuadletArgs),
    Gc(crate::cmd::gc::GcArgs),
    /// Write man pages and shell completions (used to refresh the committed copies).
    #[command(hide = true)]
    GenerateDocs(crate::cmd::generate_docs::GenerateDocsArgs),
}

/// Parse argv; on a usage error print clap's message and return exit code 2.
pub fn parse() -> Result<Cli, ExitCode> {
    match Cli::try_parse().and_then(finish) {
        Ok(cli) => Ok(cli),
        Err(err) => {
            let code = if err.use_stderr() {
                crate::exit::INVALID_INPUT
            } else {
                0
            };
            let _ = err.print();
            Err(ExitCode::from(code))
        }
    }
}

/// `--output prometheus` is a usage error for any command but `status`.
pub fn finish(cli: Cli) -> Result<Cli, clap::Error> {
    if cli.global.output_arg == OutputArg::Prometheus && !matches!(cli.command, Command::Status(_))
    {
        use clap::CommandFactory;
        return Err(Cli::command().error(
            clap::error::ErrorKind::ArgumentConflict,
            "--output prometheus is only for `archy status` (reconcile writes the same with --metrics-file)",
        ));
    }
    Ok(cli)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn output_prometheus_is_for_status_only() {
        let cli =
            finish(Cli::try_parse_from(["archy", "status", "--output", "prometheus"]).unwrap())
                .unwrap();
        assert_eq!(cli.global.output_arg, OutputArg::Prometheus);
        let settings = Settings::from(&cli.global);
        assert_eq!(
            (settings.output, settings.prometheus),
            (OutputFormat::Text, true)
        );
        let cli = finish(Cli::try_parse_from(["archy", "--output", "json", "rollback"]).unwrap())
            .unwrap();
        assert_eq!(Settings::from(&cli.global).output, OutputFormat::Json);
        let err =
            finish(Cli::try_parse_from(["archy", "reconcile", "--output", "prometheus"]).unwrap())
                .unwrap_err();
        assert!(err.to_string().contains("only for `archy status`"), "{err}");
    }

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_accept_bare_seconds_and_units() {
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn every_units_run_bound_stays_below_its_timeout_start_sec() {
        let cli = Cli::try_parse_from(["archy", "status"]).unwrap();
        let units = [
            include_str!("../systemd-timers/archy-reconcile.service"),
            include_str!("../systemd-timers/archy-heal-podman.service"),
            include_str!("../systemd-timers/archy-render-config.service"),
            include_str!("../systemd-timers/archy-verify-update.service"),
        ];
        for unit in units {
            let value = |key: &str| {
                unit.lines()
                    .find_map(|l| l.strip_prefix(key))
                    .map(|v| parse_duration(v.trim()).unwrap())
            };
            let limit = value("TimeoutStartSec=").expect("TimeoutStartSec in every unit");
            let budget = value("Environment=ARCHY_TIME_BUDGET=").unwrap_or(cli.global.time_budget);
            assert!(
                cli.global.lock_wait + budget < limit,
                "{:?} + {budget:?} >= {limit:?} in\n{unit}",
                cli.global.lock_wait
            );
        }
    }
}
