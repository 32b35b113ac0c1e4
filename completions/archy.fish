# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_archy_global_optspecs
    string join \n manifests= state-dir= run-dir= podman= output= lock-wait= network= subnet= quadlet-dir= timeout-listing= timeout-stop-margin= timeout-build= timeout-restart-command= timeout-other= time-budget= v/verbose q/quiet h/help V/version
end

function __fish_archy_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_archy_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_archy_using_subcommand
    set -l cmd (__fish_archy_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c archy -n "__fish_archy_needs_command" -l manifests -d 'Directory holding one YAML manifest per app (*.yaml)' -r -F
complete -c archy -n "__fish_archy_needs_command" -l state-dir -d 'Directory for archy\'s persistent state (secrets, status, update history)' -r -F
complete -c archy -n "__fish_archy_needs_command" -l run-dir -d 'Directory for lock files' -r -F
complete -c archy -n "__fish_archy_needs_command" -l podman -d 'The podman executable to run' -r -F
complete -c archy -n "__fish_archy_needs_command" -l output -d 'Output format: human-readable text, one JSON document on stdout, or (`archy status` only) Prometheus metrics in the text exposition format' -r -f -a "text\t''
json\t''
prometheus\t''"
complete -c archy -n "__fish_archy_needs_command" -l lock-wait -d 'How long to wait for a lock held by another archy run before giving up with exit 75' -r
complete -c archy -n "__fish_archy_needs_command" -l network -d 'Name of the podman network archy creates and attaches apps to by default' -r
complete -c archy -n "__fish_archy_needs_command" -l subnet -d 'Subnet of that network (IPv4 /24 or wider); its first address is the gateway that `host.archipelago` resolves to inside containers' -r
complete -c archy -n "__fish_archy_needs_command" -l quadlet-dir -d 'Directory of Quadlet units for apps with `owner: systemd`: `archy quadlet` writes them there and `reconcile` and `status` check them' -r -F
complete -c archy -n "__fish_archy_needs_command" -l timeout-listing -d 'Time limit of a listing or query command (`podman ps`, `inspect`, `info` …); past it the command\'s process group is killed and the run reports which command timed out' -r
complete -c archy -n "__fish_archy_needs_command" -l timeout-stop-margin -d 'Added to an app\'s `stop_timeout` to give the time limit of creating, starting, stopping or removing its container' -r
complete -c archy -n "__fish_archy_needs_command" -l timeout-build -d 'Time limit of one image build' -r
complete -c archy -n "__fish_archy_needs_command" -l timeout-restart-command -d 'Time limit of an app\'s `restart_command`' -r
complete -c archy -n "__fish_archy_needs_command" -l timeout-other -d 'Time limit of any other command (runc, ip, iptables, CNI plugins, umount)' -r
complete -c archy -n "__fish_archy_needs_command" -l time-budget -d 'Total time budget of one run: no command runs past it, so a run ends within `--lock-wait` + this (default 12m: below the timers\' TimeoutStartSec=15min)' -r
complete -c archy -n "__fish_archy_needs_command" -s v -l verbose -d 'More log detail (-v debug, -vv trace). ARCHY_LOG overrides with a tracing filter'
complete -c archy -n "__fish_archy_needs_command" -s q -l quiet -d 'Only warnings and errors; no progress display'
complete -c archy -n "__fish_archy_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c archy -n "__fish_archy_needs_command" -s V -l version -d 'Print version'
complete -c archy -n "__fish_archy_needs_command" -f -a "reconcile" -d 'Converge containers to the manifests: create missing ones, recreate drifted ones, start stopped ones. A second run with nothing changed does nothing'
complete -c archy -n "__fish_archy_needs_command" -f -a "build-image" -d 'Build missing images of apps with a `build:` context; a second run builds nothing'
complete -c archy -n "__fish_archy_needs_command" -f -a "render-config" -d 'Render every `configs:` entry from the canonical secret; rewrite only files that differ'
complete -c archy -n "__fish_archy_needs_command" -f -a "heal-podman" -d 'Diagnose podman (engine answers, database opens, no storage-only containers, no ghost OCI containers, no network debris of forgotten containers on archy\'s network, no orphaned volume dirs, runtime dirs of this boot) and repair it'
complete -c archy -n "__fish_archy_needs_command" -f -a "verify-update" -d 'Check a release tarball, arm the post-update check, or run it (probe the web UI and roll back if it does not answer)'
complete -c archy -n "__fish_archy_needs_command" -f -a "rollback" -d 'Make `previous` the current release again and restart the service'
complete -c archy -n "__fish_archy_needs_command" -f -a "status" -d 'Show whether every app is converged, podman\'s health, pending updates and the last reconcile'
complete -c archy -n "__fish_archy_needs_command" -f -a "quadlet" -d 'Write Quadlet `.container` units (`<app>.container`) so systemd runs these apps\' containers'
complete -c archy -n "__fish_archy_needs_command" -f -a "gc" -d 'Remove images nothing needs, registry images included; keep each app\'s previous image'
complete -c archy -n "__fish_archy_needs_command" -f -a "generate-docs" -d 'Write man pages and shell completions (used to refresh the committed copies)'
complete -c archy -n "__fish_archy_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c archy -n "__fish_archy_using_subcommand reconcile" -l jobs -d 'Apps converged in parallel within one dependency layer' -r
complete -c archy -n "__fish_archy_using_subcommand reconcile" -l mirror -d 'Registry mirror tried before an image\'s own registry (repeatable)' -r
complete -c archy -n "__fish_archy_using_subcommand reconcile" -l metrics-file -d 'After the run, write Prometheus metrics (what `archy status --output prometheus` prints) to this file, replaced atomically, for node_exporter\'s textfile collector. Its directory is reached without following symlinks, and below a directory another user controls only root\'s directories are accepted. A write that fails is a warning (also in `archy status`), never a failed tick. Not written by --dry-run' -r -F
complete -c archy -n "__fish_archy_using_subcommand reconcile" -l retry -d 'Clear APP\'s bad images (repeatable): the image its manifest names is tried again' -r
complete -c archy -n "__fish_archy_using_subcommand reconcile" -l acknowledge -d 'Acknowledge APP\'s rollback (repeatable): status stops failing on it; the image stays bad' -r
complete -c archy -n "__fish_archy_using_subcommand reconcile" -l force -d 'Apply APP\'s image update now even while its chain syncs (`defer_updates_while`)' -r
complete -c archy -n "__fish_archy_using_subcommand reconcile" -l manifests -d 'Directory holding one YAML manifest per app (*.yaml)' -r -F
complete -c archy -n "__fish_archy_using_subcommand reconcile" -l state-dir -d 'Directory for archy\'s persistent state (secrets, status, update history)' -r -F
complete -c archy -n "__fish_archy_using_subcommand reconcile" -l run-dir -d 'Directory for lock files' -r -F
complete -c archy -n "__fish_archy_using_subcommand reconcile" -l podman -d 'The podman executable to run' -r -F
complete -c archy -n "__fish_archy_using_subcommand reconcile" -l output -d 'Output format: human-readable text, one JSON document on stdout, or (`archy status` only) Prometheus metrics in the text exposition format' -r -f -a "text\t''
json\t''
prometheus\t''"
complete -c archy -n "__fish_archy_using_subcommand reconcile" -l lock-wait -d 'How long to wait for a lock held by another archy run before giving up with exit 75' -r
complete -c archy -n "__fish_archy_using_subcommand reconcile" -l network -d 'Name of the podman network archy creates and attaches apps to by default' -r
complete -c archy -n "__fish_archy_using_subcommand reconcile" -l subnet -d 'Subnet of that network (IPv4 /24 or wider); its first address is the gateway that `host.archipelago` resolves to inside containers' -r
complete -c archy -n "__fish_archy_using_subcommand reconcile" -l quadlet-dir -d 'Directory of Quadlet units for apps with `owner: systemd`: `archy quadlet` writes them there and `reconcile` and `status` check them' -r -F
complete -c archy -n "__fish_archy_using_subcommand reconcile" -l timeout-listing -d 'Time limit of a listing or query command (`podman ps`, `inspect`, `info` …); past it the command\'s process group is killed and the run reports which command timed out' -r
complete -c archy -n "__fish_archy_using_subcommand reconcile" -l timeout-stop-margin -d 'Added to an app\'s `stop_timeout` to give the time limit of creating, starting, stopping or removing its container' -r
complete -c archy -n "__fish_archy_using_subcommand reconcile" -l timeout-build -d 'Time limit of one image build' -r
complete -c archy -n "__fish_archy_using_subcommand reconcile" -l timeout-restart-command -d 'Time limit of an app\'s `restart_command`' -r
complete -c archy -n "__fish_archy_using_subcommand reconcile" -l timeout-other -d 'Time limit of any other command (runc, ip, iptables, CNI plugins, umount)' -r
complete -c archy -n "__fish_archy_using_subcommand reconcile" -l time-budget -d 'Total time budget of one run: no command runs past it, so a run ends within `--lock-wait` + this (default 12m: below the timers\' TimeoutStartSec=15min)' -r
complete -c archy -n "__fish_archy_using_subcommand reconcile" -l dry-run -d 'Print the plan (create / recreate / start / ok / orphan / adopt, with reasons) and change nothing'
complete -c archy -n "__fish_archy_using_subcommand reconcile" -l prune -d 'Remove managed containers that no manifest describes (volumes are kept)'
complete -c archy -n "__fish_archy_using_subcommand reconcile" -l adopt -d 'Replace an unmanaged container that holds an app\'s container name (volumes are kept)'
complete -c archy -n "__fish_archy_using_subcommand reconcile" -s v -l verbose -d 'More log detail (-v debug, -vv trace). ARCHY_LOG overrides with a tracing filter'
complete -c archy -n "__fish_archy_using_subcommand reconcile" -s q -l quiet -d 'Only warnings and errors; no progress display'
complete -c archy -n "__fish_archy_using_subcommand reconcile" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c archy -n "__fish_archy_using_subcommand reconcile" -s V -l version -d 'Print version'
complete -c archy -n "__fish_archy_using_subcommand build-image" -l manifests -d 'Directory holding one YAML manifest per app (*.yaml)' -r -F
complete -c archy -n "__fish_archy_using_subcommand build-image" -l state-dir -d 'Directory for archy\'s persistent state (secrets, status, update history)' -r -F
complete -c archy -n "__fish_archy_using_subcommand build-image" -l run-dir -d 'Directory for lock files' -r -F
complete -c archy -n "__fish_archy_using_subcommand build-image" -l podman -d 'The podman executable to run' -r -F
complete -c archy -n "__fish_archy_using_subcommand build-image" -l output -d 'Output format: human-readable text, one JSON document on stdout, or (`archy status` only) Prometheus metrics in the text exposition format' -r -f -a "text\t''
json\t''
prometheus\t''"
complete -c archy -n "__fish_archy_using_subcommand build-image" -l lock-wait -d 'How long to wait for a lock held by another archy run before giving up with exit 75' -r
complete -c archy -n "__fish_archy_using_subcommand build-image" -l network -d 'Name of the podman network archy creates and attaches apps to by default' -r
complete -c archy -n "__fish_archy_using_subcommand build-image" -l subnet -d 'Subnet of that network (IPv4 /24 or wider); its first address is the gateway that `host.archipelago` resolves to inside containers' -r
complete -c archy -n "__fish_archy_using_subcommand build-image" -l quadlet-dir -d 'Directory of Quadlet units for apps with `owner: systemd`: `archy quadlet` writes them there and `reconcile` and `status` check them' -r -F
complete -c archy -n "__fish_archy_using_subcommand build-image" -l timeout-listing -d 'Time limit of a listing or query command (`podman ps`, `inspect`, `info` …); past it the command\'s process group is killed and the run reports which command timed out' -r
complete -c archy -n "__fish_archy_using_subcommand build-image" -l timeout-stop-margin -d 'Added to an app\'s `stop_timeout` to give the time limit of creating, starting, stopping or removing its container' -r
complete -c archy -n "__fish_archy_using_subcommand build-image" -l timeout-build -d 'Time limit of one image build' -r
complete -c archy -n "__fish_archy_using_subcommand build-image" -l timeout-restart-command -d 'Time limit of an app\'s `restart_command`' -r
complete -c archy -n "__fish_archy_using_subcommand build-image" -l timeout-other -d 'Time limit of any other command (runc, ip, iptables, CNI plugins, umount)' -r
complete -c archy -n "__fish_archy_using_subcommand build-image" -l time-budget -d 'Total time budget of one run: no command runs past it, so a run ends within `--lock-wait` + this (default 12m: below the timers\' TimeoutStartSec=15min)' -r
complete -c archy -n "__fish_archy_using_subcommand build-image" -l force -d 'Rebuild even when the image for the current context exists'
complete -c archy -n "__fish_archy_using_subcommand build-image" -l dry-run -d 'Show what would be built or removed; change nothing'
complete -c archy -n "__fish_archy_using_subcommand build-image" -l prune -d 'Remove `localhost/archy-<app>:*` images no manifest or container references'
complete -c archy -n "__fish_archy_using_subcommand build-image" -s v -l verbose -d 'More log detail (-v debug, -vv trace). ARCHY_LOG overrides with a tracing filter'
complete -c archy -n "__fish_archy_using_subcommand build-image" -s q -l quiet -d 'Only warnings and errors; no progress display'
complete -c archy -n "__fish_archy_using_subcommand build-image" -s h -l help -d 'Print help'
complete -c archy -n "__fish_archy_using_subcommand build-image" -s V -l version -d 'Print version'
complete -c archy -n "__fish_archy_using_subcommand render-config" -l manifests -d 'Directory holding one YAML manifest per app (*.yaml)' -r -F
complete -c archy -n "__fish_archy_using_subcommand render-config" -l state-dir -d 'Directory for archy\'s persistent state (secrets, status, update history)' -r -F
complete -c archy -n "__fish_archy_using_subcommand render-config" -l run-dir -d 'Directory for lock files' -r -F
complete -c archy -n "__fish_archy_using_subcommand render-config" -l podman -d 'The podman executable to run' -r -F
complete -c archy -n "__fish_archy_using_subcommand render-config" -l output -d 'Output format: human-readable text, one JSON document on stdout, or (`archy status` only) Prometheus metrics in the text exposition format' -r -f -a "text\t''
json\t''
prometheus\t''"
complete -c archy -n "__fish_archy_using_subcommand render-config" -l lock-wait -d 'How long to wait for a lock held by another archy run before giving up with exit 75' -r
complete -c archy -n "__fish_archy_using_subcommand render-config" -l network -d 'Name of the podman network archy creates and attaches apps to by default' -r
complete -c archy -n "__fish_archy_using_subcommand render-config" -l subnet -d 'Subnet of that network (IPv4 /24 or wider); its first address is the gateway that `host.archipelago` resolves to inside containers' -r
complete -c archy -n "__fish_archy_using_subcommand render-config" -l quadlet-dir -d 'Directory of Quadlet units for apps with `owner: systemd`: `archy quadlet` writes them there and `reconcile` and `status` check them' -r -F
complete -c archy -n "__fish_archy_using_subcommand render-config" -l timeout-listing -d 'Time limit of a listing or query command (`podman ps`, `inspect`, `info` …); past it the command\'s process group is killed and the run reports which command timed out' -r
complete -c archy -n "__fish_archy_using_subcommand render-config" -l timeout-stop-margin -d 'Added to an app\'s `stop_timeout` to give the time limit of creating, starting, stopping or removing its container' -r
complete -c archy -n "__fish_archy_using_subcommand render-config" -l timeout-build -d 'Time limit of one image build' -r
complete -c archy -n "__fish_archy_using_subcommand render-config" -l timeout-restart-command -d 'Time limit of an app\'s `restart_command`' -r
complete -c archy -n "__fish_archy_using_subcommand render-config" -l timeout-other -d 'Time limit of any other command (runc, ip, iptables, CNI plugins, umount)' -r
complete -c archy -n "__fish_archy_using_subcommand render-config" -l time-budget -d 'Total time budget of one run: no command runs past it, so a run ends within `--lock-wait` + this (default 12m: below the timers\' TimeoutStartSec=15min)' -r
complete -c archy -n "__fish_archy_using_subcommand render-config" -l check -d 'Write nothing; exit 1 when any file differs from what would be rendered'
complete -c archy -n "__fish_archy_using_subcommand render-config" -l dry-run -d 'Show what would be written; change nothing'
complete -c archy -n "__fish_archy_using_subcommand render-config" -l rotate-secret -d 'Replace the canonical secret with a new random one and re-render every dependent file. Takes no APP filter: every consumer shares the one secret, so all of their files are rewritten (and `archy reconcile` then restarts every consumer)'
complete -c archy -n "__fish_archy_using_subcommand render-config" -s v -l verbose -d 'More log detail (-v debug, -vv trace). ARCHY_LOG overrides with a tracing filter'
complete -c archy -n "__fish_archy_using_subcommand render-config" -s q -l quiet -d 'Only warnings and errors; no progress display'
complete -c archy -n "__fish_archy_using_subcommand render-config" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c archy -n "__fish_archy_using_subcommand render-config" -s V -l version -d 'Print version'
complete -c archy -n "__fish_archy_using_subcommand heal-podman" -l manifests -d 'Directory holding one YAML manifest per app (*.yaml)' -r -F
complete -c archy -n "__fish_archy_using_subcommand heal-podman" -l state-dir -d 'Directory for archy\'s persistent state (secrets, status, update history)' -r -F
complete -c archy -n "__fish_archy_using_subcommand heal-podman" -l run-dir -d 'Directory for lock files' -r -F
complete -c archy -n "__fish_archy_using_subcommand heal-podman" -l podman -d 'The podman executable to run' -r -F
complete -c archy -n "__fish_archy_using_subcommand heal-podman" -l output -d 'Output format: human-readable text, one JSON document on stdout, or (`archy status` only) Prometheus metrics in the text exposition format' -r -f -a "text\t''
json\t''
prometheus\t''"
complete -c archy -n "__fish_archy_using_subcommand heal-podman" -l lock-wait -d 'How long to wait for a lock held by another archy run before giving up with exit 75' -r
complete -c archy -n "__fish_archy_using_subcommand heal-podman" -l network -d 'Name of the podman network archy creates and attaches apps to by default' -r
complete -c archy -n "__fish_archy_using_subcommand heal-podman" -l subnet -d 'Subnet of that network (IPv4 /24 or wider); its first address is the gateway that `host.archipelago` resolves to inside containers' -r
complete -c archy -n "__fish_archy_using_subcommand heal-podman" -l quadlet-dir -d 'Directory of Quadlet units for apps with `owner: systemd`: `archy quadlet` writes them there and `reconcile` and `status` check them' -r -F
complete -c archy -n "__fish_archy_using_subcommand heal-podman" -l timeout-listing -d 'Time limit of a listing or query command (`podman ps`, `inspect`, `info` …); past it the command\'s process group is killed and the run reports which command timed out' -r
complete -c archy -n "__fish_archy_using_subcommand heal-podman" -l timeout-stop-margin -d 'Added to an app\'s `stop_timeout` to give the time limit of creating, starting, stopping or removing its container' -r
complete -c archy -n "__fish_archy_using_subcommand heal-podman" -l timeout-build -d 'Time limit of one image build' -r
complete -c archy -n "__fish_archy_using_subcommand heal-podman" -l timeout-restart-command -d 'Time limit of an app\'s `restart_command`' -r
complete -c archy -n "__fish_archy_using_subcommand heal-podman" -l timeout-other -d 'Time limit of any other command (runc, ip, iptables, CNI plugins, umount)' -r
complete -c archy -n "__fish_archy_using_subcommand heal-podman" -l time-budget -d 'Total time budget of one run: no command runs past it, so a run ends within `--lock-wait` + this (default 12m: below the timers\' TimeoutStartSec=15min)' -r
complete -c archy -n "__fish_archy_using_subcommand heal-podman" -l dry-run -d 'Print the probes and the repairs that would run; change nothing'
complete -c archy -n "__fish_archy_using_subcommand heal-podman" -l yes -d 'Also remove storage-only containers whose names archy does not manage'
complete -c archy -n "__fish_archy_using_subcommand heal-podman" -s v -l verbose -d 'More log detail (-v debug, -vv trace). ARCHY_LOG overrides with a tracing filter'
complete -c archy -n "__fish_archy_using_subcommand heal-podman" -s q -l quiet -d 'Only warnings and errors; no progress display'
complete -c archy -n "__fish_archy_using_subcommand heal-podman" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c archy -n "__fish_archy_using_subcommand heal-podman" -s V -l version -d 'Print version'
complete -c archy -n "__fish_archy_using_subcommand verify-update" -l install-root -d 'Installation holding `releases/<version>/`, `current` and `previous`' -r -F
complete -c archy -n "__fish_archy_using_subcommand verify-update" -l restart-cmd -d 'Command run once after switching to the previous release (split into words, never run by a shell)' -r
complete -c archy -n "__fish_archy_using_subcommand verify-update" -l tarball -d 'Check this release tar.gz (headers only) instead of probing: root directory 0755, every directory o+rx and with an entry of its own, every file o+r, no absolute or `..` paths, no device nodes or fifos, no setuid/setgid, no link leaving the root when resolved through the archive\'s own links; every gzip member read, end-of-archive marker required' -r -F
complete -c archy -n "__fish_archy_using_subcommand verify-update" -l sha256 -d 'With --tarball: the expected SHA-256 of the file (64 hex digits)' -r
complete -c archy -n "__fish_archy_using_subcommand verify-update" -l require -d 'With --tarball: a path that must exist in the archive, as stored (a leading `./` is optional; repeatable), e.g. `web-ui/index.html`' -r
complete -c archy -n "__fish_archy_using_subcommand verify-update" -l version -d 'With --arm: the version being installed (default: the one `current` points at)' -r
complete -c archy -n "__fish_archy_using_subcommand verify-update" -l url -d 'URL of the web UI to probe. Certificate checks are skipped only when its host is a loopback address (127.0.0.0/8, ::1, localhost)' -r
complete -c archy -n "__fish_archy_using_subcommand verify-update" -l expect -d 'HTTP status that counts as healthy' -r
complete -c archy -n "__fish_archy_using_subcommand verify-update" -l successes -d 'Healthy answers needed in a row' -r
complete -c archy -n "__fish_archy_using_subcommand verify-update" -l interval -d 'Time between probes' -r
complete -c archy -n "__fish_archy_using_subcommand verify-update" -l timeout -d 'Give up (and roll back) when the web UI has not proven healthy within this time' -r
complete -c archy -n "__fish_archy_using_subcommand verify-update" -l manifests -d 'Directory holding one YAML manifest per app (*.yaml)' -r -F
complete -c archy -n "__fish_archy_using_subcommand verify-update" -l state-dir -d 'Directory for archy\'s persistent state (secrets, status, update history)' -r -F
complete -c archy -n "__fish_archy_using_subcommand verify-update" -l run-dir -d 'Directory for lock files' -r -F
complete -c archy -n "__fish_archy_using_subcommand verify-update" -l podman -d 'The podman executable to run' -r -F
complete -c archy -n "__fish_archy_using_subcommand verify-update" -l output -d 'Output format: human-readable text, one JSON document on stdout, or (`archy status` only) Prometheus metrics in the text exposition format' -r -f -a "text\t''
json\t''
prometheus\t''"
complete -c archy -n "__fish_archy_using_subcommand verify-update" -l lock-wait -d 'How long to wait for a lock held by another archy run before giving up with exit 75' -r
complete -c archy -n "__fish_archy_using_subcommand verify-update" -l network -d 'Name of the podman network archy creates and attaches apps to by default' -r
complete -c archy -n "__fish_archy_using_subcommand verify-update" -l subnet -d 'Subnet of that network (IPv4 /24 or wider); its first address is the gateway that `host.archipelago` resolves to inside containers' -r
complete -c archy -n "__fish_archy_using_subcommand verify-update" -l quadlet-dir -d 'Directory of Quadlet units for apps with `owner: systemd`: `archy quadlet` writes them there and `reconcile` and `status` check them' -r -F
complete -c archy -n "__fish_archy_using_subcommand verify-update" -l timeout-listing -d 'Time limit of a listing or query command (`podman ps`, `inspect`, `info` …); past it the command\'s process group is killed and the run reports which command timed out' -r
complete -c archy -n "__fish_archy_using_subcommand verify-update" -l timeout-stop-margin -d 'Added to an app\'s `stop_timeout` to give the time limit of creating, starting, stopping or removing its container' -r
complete -c archy -n "__fish_archy_using_subcommand verify-update" -l timeout-build -d 'Time limit of one image build' -r
complete -c archy -n "__fish_archy_using_subcommand verify-update" -l timeout-restart-command -d 'Time limit of an app\'s `restart_command`' -r
complete -c archy -n "__fish_archy_using_subcommand verify-update" -l timeout-other -d 'Time limit of any other command (runc, ip, iptables, CNI plugins, umount)' -r
complete -c archy -n "__fish_archy_using_subcommand verify-update" -l time-budget -d 'Total time budget of one run: no command runs past it, so a run ends within `--lock-wait` + this (default 12m: below the timers\' TimeoutStartSec=15min)' -r
complete -c archy -n "__fish_archy_using_subcommand verify-update" -l arm -d 'Arm the check after switching `current` to a new release: writes `<state-dir>/update/pending.json` with the version and the previous one'
complete -c archy -n "__fish_archy_using_subcommand verify-update" -l no-rollback -d 'On failure record the bad version but do not roll back (the marker stays)'
complete -c archy -n "__fish_archy_using_subcommand verify-update" -s v -l verbose -d 'More log detail (-v debug, -vv trace). ARCHY_LOG overrides with a tracing filter'
complete -c archy -n "__fish_archy_using_subcommand verify-update" -s q -l quiet -d 'Only warnings and errors; no progress display'
complete -c archy -n "__fish_archy_using_subcommand verify-update" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c archy -n "__fish_archy_using_subcommand rollback" -l install-root -d 'Installation holding `releases/<version>/`, `current` and `previous`' -r -F
complete -c archy -n "__fish_archy_using_subcommand rollback" -l restart-cmd -d 'Command run once after switching to the previous release (split into words, never run by a shell)' -r
complete -c archy -n "__fish_archy_using_subcommand rollback" -l reason -d 'Why, recorded in `<state-dir>/update/history.jsonl`' -r
complete -c archy -n "__fish_archy_using_subcommand rollback" -l manifests -d 'Directory holding one YAML manifest per app (*.yaml)' -r -F
complete -c archy -n "__fish_archy_using_subcommand rollback" -l state-dir -d 'Directory for archy\'s persistent state (secrets, status, update history)' -r -F
complete -c archy -n "__fish_archy_using_subcommand rollback" -l run-dir -d 'Directory for lock files' -r -F
complete -c archy -n "__fish_archy_using_subcommand rollback" -l podman -d 'The podman executable to run' -r -F
complete -c archy -n "__fish_archy_using_subcommand rollback" -l output -d 'Output format: human-readable text, one JSON document on stdout, or (`archy status` only) Prometheus metrics in the text exposition format' -r -f -a "text\t''
json\t''
prometheus\t''"
complete -c archy -n "__fish_archy_using_subcommand rollback" -l lock-wait -d 'How long to wait for a lock held by another archy run before giving up with exit 75' -r
complete -c archy -n "__fish_archy_using_subcommand rollback" -l network -d 'Name of the podman network archy creates and attaches apps to by default' -r
complete -c archy -n "__fish_archy_using_subcommand rollback" -l subnet -d 'Subnet of that network (IPv4 /24 or wider); its first address is the gateway that `host.archipelago` resolves to inside containers' -r
complete -c archy -n "__fish_archy_using_subcommand rollback" -l quadlet-dir -d 'Directory of Quadlet units for apps with `owner: systemd`: `archy quadlet` writes them there and `reconcile` and `status` check them' -r -F
complete -c archy -n "__fish_archy_using_subcommand rollback" -l timeout-listing -d 'Time limit of a listing or query command (`podman ps`, `inspect`, `info` …); past it the command\'s process group is killed and the run reports which command timed out' -r
complete -c archy -n "__fish_archy_using_subcommand rollback" -l timeout-stop-margin -d 'Added to an app\'s `stop_timeout` to give the time limit of creating, starting, stopping or removing its container' -r
complete -c archy -n "__fish_archy_using_subcommand rollback" -l timeout-build -d 'Time limit of one image build' -r
complete -c archy -n "__fish_archy_using_subcommand rollback" -l timeout-restart-command -d 'Time limit of an app\'s `restart_command`' -r
complete -c archy -n "__fish_archy_using_subcommand rollback" -l timeout-other -d 'Time limit of any other command (runc, ip, iptables, CNI plugins, umount)' -r
complete -c archy -n "__fish_archy_using_subcommand rollback" -l time-budget -d 'Total time budget of one run: no command runs past it, so a run ends within `--lock-wait` + this (default 12m: below the timers\' TimeoutStartSec=15min)' -r
complete -c archy -n "__fish_archy_using_subcommand rollback" -l dry-run -d 'Say what would happen; change nothing and run nothing'
complete -c archy -n "__fish_archy_using_subcommand rollback" -s v -l verbose -d 'More log detail (-v debug, -vv trace). ARCHY_LOG overrides with a tracing filter'
complete -c archy -n "__fish_archy_using_subcommand rollback" -s q -l quiet -d 'Only warnings and errors; no progress display'
complete -c archy -n "__fish_archy_using_subcommand rollback" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c archy -n "__fish_archy_using_subcommand rollback" -s V -l version -d 'Print version'
complete -c archy -n "__fish_archy_using_subcommand status" -l max-reconcile-age -d 'Fail (exit 1) when a full reconcile has not completed for longer than this, whatever the reconcile unit\'s exit status says (default: four 30-second ticks)' -r
complete -c archy -n "__fish_archy_using_subcommand status" -l min-free -d 'Fail (exit 1) when the file system of podman\'s graph root, its volume path or the state dir has less free space than this: a percent of its size, a size (`2g`), or both comma-separated (low when below either)' -r
complete -c archy -n "__fish_archy_using_subcommand status" -l manifests -d 'Directory holding one YAML manifest per app (*.yaml)' -r -F
complete -c archy -n "__fish_archy_using_subcommand status" -l state-dir -d 'Directory for archy\'s persistent state (secrets, status, update history)' -r -F
complete -c archy -n "__fish_archy_using_subcommand status" -l run-dir -d 'Directory for lock files' -r -F
complete -c archy -n "__fish_archy_using_subcommand status" -l podman -d 'The podman executable to run' -r -F
complete -c archy -n "__fish_archy_using_subcommand status" -l output -d 'Output format: human-readable text, one JSON document on stdout, or (`archy status` only) Prometheus metrics in the text exposition format' -r -f -a "text\t''
json\t''
prometheus\t''"
complete -c archy -n "__fish_archy_using_subcommand status" -l lock-wait -d 'How long to wait for a lock held by another archy run before giving up with exit 75' -r
complete -c archy -n "__fish_archy_using_subcommand status" -l network -d 'Name of the podman network archy creates and attaches apps to by default' -r
complete -c archy -n "__fish_archy_using_subcommand status" -l subnet -d 'Subnet of that network (IPv4 /24 or wider); its first address is the gateway that `host.archipelago` resolves to inside containers' -r
complete -c archy -n "__fish_archy_using_subcommand status" -l quadlet-dir -d 'Directory of Quadlet units for apps with `owner: systemd`: `archy quadlet` writes them there and `reconcile` and `status` check them' -r -F
complete -c archy -n "__fish_archy_using_subcommand status" -l timeout-listing -d 'Time limit of a listing or query command (`podman ps`, `inspect`, `info` …); past it the command\'s process group is killed and the run reports which command timed out' -r
complete -c archy -n "__fish_archy_using_subcommand status" -l timeout-stop-margin -d 'Added to an app\'s `stop_timeout` to give the time limit of creating, starting, stopping or removing its container' -r
complete -c archy -n "__fish_archy_using_subcommand status" -l timeout-build -d 'Time limit of one image build' -r
complete -c archy -n "__fish_archy_using_subcommand status" -l timeout-restart-command -d 'Time limit of an app\'s `restart_command`' -r
complete -c archy -n "__fish_archy_using_subcommand status" -l timeout-other -d 'Time limit of any other command (runc, ip, iptables, CNI plugins, umount)' -r
complete -c archy -n "__fish_archy_using_subcommand status" -l time-budget -d 'Total time budget of one run: no command runs past it, so a run ends within `--lock-wait` + this (default 12m: below the timers\' TimeoutStartSec=15min)' -r
complete -c archy -n "__fish_archy_using_subcommand status" -s v -l verbose -d 'More log detail (-v debug, -vv trace). ARCHY_LOG overrides with a tracing filter'
complete -c archy -n "__fish_archy_using_subcommand status" -s q -l quiet -d 'Only warnings and errors; no progress display'
complete -c archy -n "__fish_archy_using_subcommand status" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c archy -n "__fish_archy_using_subcommand status" -s V -l version -d 'Print version'
complete -c archy -n "__fish_archy_using_subcommand quadlet" -l podman-version -d 'Podman version the units are for, X.Y (default: the local `podman version`)' -r
complete -c archy -n "__fish_archy_using_subcommand quadlet" -l out -d 'Directory to write the units to (default: --quadlet-dir, /etc/containers/systemd)' -r -F
complete -c archy -n "__fish_archy_using_subcommand quadlet" -l manifests -d 'Directory holding one YAML manifest per app (*.yaml)' -r -F
complete -c archy -n "__fish_archy_using_subcommand quadlet" -l state-dir -d 'Directory for archy\'s persistent state (secrets, status, update history)' -r -F
complete -c archy -n "__fish_archy_using_subcommand quadlet" -l run-dir -d 'Directory for lock files' -r -F
complete -c archy -n "__fish_archy_using_subcommand quadlet" -l podman -d 'The podman executable to run' -r -F
complete -c archy -n "__fish_archy_using_subcommand quadlet" -l output -d 'Output format: human-readable text, one JSON document on stdout, or (`archy status` only) Prometheus metrics in the text exposition format' -r -f -a "text\t''
json\t''
prometheus\t''"
complete -c archy -n "__fish_archy_using_subcommand quadlet" -l lock-wait -d 'How long to wait for a lock held by another archy run before giving up with exit 75' -r
complete -c archy -n "__fish_archy_using_subcommand quadlet" -l network -d 'Name of the podman network archy creates and attaches apps to by default' -r
complete -c archy -n "__fish_archy_using_subcommand quadlet" -l subnet -d 'Subnet of that network (IPv4 /24 or wider); its first address is the gateway that `host.archipelago` resolves to inside containers' -r
complete -c archy -n "__fish_archy_using_subcommand quadlet" -l quadlet-dir -d 'Directory of Quadlet units for apps with `owner: systemd`: `archy quadlet` writes them there and `reconcile` and `status` check them' -r -F
complete -c archy -n "__fish_archy_using_subcommand quadlet" -l timeout-listing -d 'Time limit of a listing or query command (`podman ps`, `inspect`, `info` …); past it the command\'s process group is killed and the run reports which command timed out' -r
complete -c archy -n "__fish_archy_using_subcommand quadlet" -l timeout-stop-margin -d 'Added to an app\'s `stop_timeout` to give the time limit of creating, starting, stopping or removing its container' -r
complete -c archy -n "__fish_archy_using_subcommand quadlet" -l timeout-build -d 'Time limit of one image build' -r
complete -c archy -n "__fish_archy_using_subcommand quadlet" -l timeout-restart-command -d 'Time limit of an app\'s `restart_command`' -r
complete -c archy -n "__fish_archy_using_subcommand quadlet" -l timeout-other -d 'Time limit of any other command (runc, ip, iptables, CNI plugins, umount)' -r
complete -c archy -n "__fish_archy_using_subcommand quadlet" -l time-budget -d 'Total time budget of one run: no command runs past it, so a run ends within `--lock-wait` + this (default 12m: below the timers\' TimeoutStartSec=15min)' -r
complete -c archy -n "__fish_archy_using_subcommand quadlet" -l dry-run -d 'Say which units would be written and write nothing'
complete -c archy -n "__fish_archy_using_subcommand quadlet" -s v -l verbose -d 'More log detail (-v debug, -vv trace). ARCHY_LOG overrides with a tracing filter'
complete -c archy -n "__fish_archy_using_subcommand quadlet" -s q -l quiet -d 'Only warnings and errors; no progress display'
complete -c archy -n "__fish_archy_using_subcommand quadlet" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c archy -n "__fish_archy_using_subcommand quadlet" -s V -l version -d 'Print version'
complete -c archy -n "__fish_archy_using_subcommand gc" -l manifests -d 'Directory holding one YAML manifest per app (*.yaml)' -r -F
complete -c archy -n "__fish_archy_using_subcommand gc" -l state-dir -d 'Directory for archy\'s persistent state (secrets, status, update history)' -r -F
complete -c archy -n "__fish_archy_using_subcommand gc" -l run-dir -d 'Directory for lock files' -r -F
complete -c archy -n "__fish_archy_using_subcommand gc" -l podman -d 'The podman executable to run' -r -F
complete -c archy -n "__fish_archy_using_subcommand gc" -l output -d 'Output format: human-readable text, one JSON document on stdout, or (`archy status` only) Prometheus metrics in the text exposition format' -r -f -a "text\t''
json\t''
prometheus\t''"
complete -c archy -n "__fish_archy_using_subcommand gc" -l lock-wait -d 'How long to wait for a lock held by another archy run before giving up with exit 75' -r
complete -c archy -n "__fish_archy_using_subcommand gc" -l network -d 'Name of the podman network archy creates and attaches apps to by default' -r
complete -c archy -n "__fish_archy_using_subcommand gc" -l subnet -d 'Subnet of that network (IPv4 /24 or wider); its first address is the gateway that `host.archipelago` resolves to inside containers' -r
complete -c archy -n "__fish_archy_using_subcommand gc" -l quadlet-dir -d 'Directory of Quadlet units for apps with `owner: systemd`: `archy quadlet` writes them there and `reconcile` and `status` check them' -r -F
complete -c archy -n "__fish_archy_using_subcommand gc" -l timeout-listing -d 'Time limit of a listing or query command (`podman ps`, `inspect`, `info` …); past it the command\'s process group is killed and the run reports which command timed out' -r
complete -c archy -n "__fish_archy_using_subcommand gc" -l timeout-stop-margin -d 'Added to an app\'s `stop_timeout` to give the time limit of creating, starting, stopping or removing its container' -r
complete -c archy -n "__fish_archy_using_subcommand gc" -l timeout-build -d 'Time limit of one image build' -r
complete -c archy -n "__fish_archy_using_subcommand gc" -l timeout-restart-command -d 'Time limit of an app\'s `restart_command`' -r
complete -c archy -n "__fish_archy_using_subcommand gc" -l timeout-other -d 'Time limit of any other command (runc, ip, iptables, CNI plugins, umount)' -r
complete -c archy -n "__fish_archy_using_subcommand gc" -l time-budget -d 'Total time budget of one run: no command runs past it, so a run ends within `--lock-wait` + this (default 12m: below the timers\' TimeoutStartSec=15min)' -r
complete -c archy -n "__fish_archy_using_subcommand gc" -l dry-run -d 'List what would be removed, with sizes; remove nothing'
complete -c archy -n "__fish_archy_using_subcommand gc" -s v -l verbose -d 'More log detail (-v debug, -vv trace). ARCHY_LOG overrides with a tracing filter'
complete -c archy -n "__fish_archy_using_subcommand gc" -s q -l quiet -d 'Only warnings and errors; no progress display'
complete -c archy -n "__fish_archy_using_subcommand gc" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c archy -n "__fish_archy_using_subcommand gc" -s V -l version -d 'Print version'
complete -c archy -n "__fish_archy_using_subcommand generate-docs" -l man-dir -d 'Directory for man pages' -r -F
complete -c archy -n "__fish_archy_using_subcommand generate-docs" -l completions-dir -d 'Directory for shell completions' -r -F
complete -c archy -n "__fish_archy_using_subcommand generate-docs" -l manifests -d 'Directory holding one YAML manifest per app (*.yaml)' -r -F
complete -c archy -n "__fish_archy_using_subcommand generate-docs" -l state-dir -d 'Directory for archy\'s persistent state (secrets, status, update history)' -r -F
complete -c archy -n "__fish_archy_using_subcommand generate-docs" -l run-dir -d 'Directory for lock files' -r -F
complete -c archy -n "__fish_archy_using_subcommand generate-docs" -l podman -d 'The podman executable to run' -r -F
complete -c archy -n "__fish_archy_using_subcommand generate-docs" -l output -d 'Output format: human-readable text, one JSON document on stdout, or (`archy status` only) Prometheus metrics in the text exposition format' -r -f -a "text\t''
json\t''
prometheus\t''"
complete -c archy -n "__fish_archy_using_subcommand generate-docs" -l lock-wait -d 'How long to wait for a lock held by another archy run before giving up with exit 75' -r
complete -c archy -n "__fish_archy_using_subcommand generate-docs" -l network -d 'Name of the podman network archy creates and attaches apps to by default' -r
complete -c archy -n "__fish_archy_using_subcommand generate-docs" -l subnet -d 'Subnet of that network (IPv4 /24 or wider); its first address is the gateway that `host.archipelago` resolves to inside containers' -r
complete -c archy -n "__fish_archy_using_subcommand generate-docs" -l quadlet-dir -d 'Directory of Quadlet units for apps with `owner: systemd`: `archy quadlet` writes them there and `reconcile` and `status` check them' -r -F
complete -c archy -n "__fish_archy_using_subcommand generate-docs" -l timeout-listing -d 'Time limit of a listing or query command (`podman ps`, `inspect`, `info` …); past it the command\'s process group is killed and the run reports which command timed out' -r
complete -c archy -n "__fish_archy_using_subcommand generate-docs" -l timeout-stop-margin -d 'Added to an app\'s `stop_timeout` to give the time limit of creating, starting, stopping or removing its container' -r
complete -c archy -n "__fish_archy_using_subcommand generate-docs" -l timeout-build -d 'Time limit of one image build' -r
complete -c archy -n "__fish_archy_using_subcommand generate-docs" -l timeout-restart-command -d 'Time limit of an app\'s `restart_command`' -r
complete -c archy -n "__fish_archy_using_subcommand generate-docs" -l timeout-other -d 'Time limit of any other command (runc, ip, iptables, CNI plugins, umount)' -r
complete -c archy -n "__fish_archy_using_subcommand generate-docs" -l time-budget -d 'Total time budget of one run: no command runs past it, so a run ends within `--lock-wait` + this (default 12m: below the timers\' TimeoutStartSec=15min)' -r
complete -c archy -n "__fish_archy_using_subcommand generate-docs" -s v -l verbose -d 'More log detail (-v debug, -vv trace). ARCHY_LOG overrides with a tracing filter'
complete -c archy -n "__fish_archy_using_subcommand generate-docs" -s q -l quiet -d 'Only warnings and errors; no progress display'
complete -c archy -n "__fish_archy_using_subcommand generate-docs" -s h -l help -d 'Print help'
complete -c archy -n "__fish_archy_using_subcommand generate-docs" -s V -l version -d 'Print version'
complete -c archy -n "__fish_archy_using_subcommand help; and not __fish_seen_subcommand_from reconcile build-image render-config heal-podman verify-update rollback status quadlet gc generate-docs help" -f -a "reconcile" -d 'Converge containers to the manifests: create missing ones, recreate drifted ones, start stopped ones. A second run with nothing changed does nothing'
complete -c archy -n "__fish_archy_using_subcommand help; and not __fish_seen_subcommand_from reconcile build-image render-config heal-podman verify-update rollback status quadlet gc generate-docs help" -f -a "build-image" -d 'Build missing images of apps with a `build:` context; a second run builds nothing'
complete -c archy -n "__fish_archy_using_subcommand help; and not __fish_seen_subcommand_from reconcile build-image render-config heal-podman verify-update rollback status quadlet gc generate-docs help" -f -a "render-config" -d 'Render every `configs:` entry from the canonical secret; rewrite only files that differ'
complete -c archy -n "__fish_archy_using_subcommand help; and not __fish_seen_subcommand_from reconcile build-image render-config heal-podman verify-update rollback status quadlet gc generate-docs help" -f -a "heal-podman" -d 'Diagnose podman (engine answers, database opens, no storage-only containers, no ghost OCI containers, no network debris of forgotten containers on archy\'s network, no orphaned volume dirs, runtime dirs of this boot) and repair it'
complete -c archy -n "__fish_archy_using_subcommand help; and not __fish_seen_subcommand_from reconcile build-image render-config heal-podman verify-update rollback status quadlet gc generate-docs help" -f -a "verify-update" -d 'Check a release tarball, arm the post-update check, or run it (probe the web UI and roll back if it does not answer)'
complete -c archy -n "__fish_archy_using_subcommand help; and not __fish_seen_subcommand_from reconcile build-image render-config heal-podman verify-update rollback status quadlet gc generate-docs help" -f -a "rollback" -d 'Make `previous` the current release again and restart the service'
complete -c archy -n "__fish_archy_using_subcommand help; and not __fish_seen_subcommand_from reconcile build-image render-config heal-podman verify-update rollback status quadlet gc generate-docs help" -f -a "status" -d 'Show whether every app is converged, podman\'s health, pending updates and the last reconcile'
complete -c archy -n "__fish_archy_using_subcommand help; and not __fish_seen_subcommand_from reconcile build-image render-config heal-podman verify-update rollback status quadlet gc generate-docs help" -f -a "quadlet" -d 'Write Quadlet `.container` units (`<app>.container`) so systemd runs these apps\' containers'
complete -c archy -n "__fish_archy_using_subcommand help; and not __fish_seen_subcommand_from reconcile build-image render-config heal-podman verify-update rollback status quadlet gc generate-docs help" -f -a "gc" -d 'Remove images nothing needs, registry images included; keep each app\'s previous image'
complete -c archy -n "__fish_archy_using_subcommand help; and not __fish_seen_subcommand_from reconcile build-image render-config heal-podman verify-update rollback status quadlet gc generate-docs help" -f -a "generate-docs" -d 'Write man pages and shell completions (used to refresh the committed copies)'
complete -c archy -n "__fish_archy_using_subcommand help; and not __fish_seen_subcommand_from reconcile build-image render-config heal-podman verify-update rollback status quadlet gc generate-docs help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
