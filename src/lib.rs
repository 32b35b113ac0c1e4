//! archy: one-shot, idempotent subcommands that keep a self-hosted Bitcoin node appliance
//! converged: podman containers, generated configs, the podman engine and OTA updates.

pub mod adopt;
pub mod backup;
pub mod cli;
pub mod clock;
pub mod cmd;
pub mod ctx;
pub mod exec;
pub mod exit;
pub mod fsutil;
pub mod guard;
pub mod heal;
pub mod health;
pub mod images;
pub mod lock;
pub mod logging;
pub mod manifest;
pub mod metrics;
pub mod output;
pub mod plan;
pub mod podman;
pub mod procinfo;
pub mod quadlet;
pub mod reconcile;
pub mod render;
pub mod rpc_users;
pub mod secret;
pub mod spec;
pub mod state;
pub mod status;
pub mod update;

use std::process::ExitCode;

/// Parse the command line, run the subcommand and map its outcome to an exit code.
pub fn main_entry() -> ExitCode {
    // One malloc arena for all of archy's threads: they are few and allocate little at a time,
    // and glibc's default (an arena per thread) costs each new thread a 64 MiB reservation and
    // its page faults (~0.1 ms of a no-op tick's CPU, BENCHMARKS.md (c)).
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt(3) only sets an allocator parameter; no thread exists yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
    let cli = match cli::parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    logging::init(cli.global.verbose, cli.global.quiet);
    let g = &cli.global;
    exec::set_limits(exec::Limits {
        listing: g.timeout_listing,
        stop_margin: g.timeout_stop_margin,
        build: g.timeout_build,
        restart_command: g.timeout_restart_command,
        other: g.timeout_other,
    });
    exec::set_deadline(std::time::Instant::now().checked_add(g.time_budget));
    exec::install_signal_handlers();
    match cmd::run(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            let code = exit::code_for(&err);
            exit::print_error(&err, cli.global.output_arg.format());
            ExitCode::from(code)
        }
    }
}
