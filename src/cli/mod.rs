//! The command line: clap types and one thin function per command.

mod boxcmds;
mod cachecmds;
mod cicmds;
mod doctor;
mod envcmds;
mod machinecmds;
mod releasecmds;
mod render;
pub(crate) mod snapcmds;

use std::path::{Path, PathBuf};

use clap::{CommandFactory, Parser, Subcommand};

use crate::output::Printer;

#[derive(Debug, Parser)]
#[command(
    name = "hdev",
    version,
    about = "Developer environments from one Envfile: VMs (libvirt) and containers (Docker)",
    propagate_version = true
)]
pub(crate) struct Cli {
    /// Envfile to use (default: `Envfile` in this folder or the nearest one above).
    #[arg(short = 'f', long = "file", global = true, env = "HDEV_ENVFILE")]
    pub file: Option<PathBuf>,

    /// Machine-readable JSON output.
    #[arg(long, global = true)]
    pub json: bool,

    /// Hosts file placing machines on hosts (`[host.NAME]` tables, like an inventory);
    /// remembered for this Envfile's folder until given again (`none` forgets it).
    #[arg(long, global = true, env = "HDEV_HOSTS", value_name = "FILE")]
    pub hosts: Option<PathBuf>,

    /// A working copy in place of a source (`--use scheduler=../scheduler`), for this
    /// command; repeat it for several. `Envfile.local` holds such overrides too.
    #[arg(long = "use", global = true, value_name = "NAME=PATH", value_parser = crate::envfile::parse_use)]
    pub uses: Vec<crate::envfile::Override>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Write an Envfile (and the files it uses) from a template into this folder.
    Init {
        /// Template to start from.
        #[arg(long, short, default_value = "minimal")]
        template: String,
        /// List the templates.
        #[arg(long)]
        list: bool,
        /// Overwrite files that already exist.
        #[arg(long)]
        force: bool,
    },
    /// Check the Envfile and report every problem with its line and column.
    Validate,
    /// Print the environment hash.
    Hash {
        /// Show everything that went into the hash.
        #[arg(long)]
        explain: bool,
        /// Print the short form (12 hex digits).
        #[arg(long)]
        short: bool,
    },
    /// Write Envfile.lock: the box digests, each source's commit and the environment hash.
    Lock {
        /// Fail if Envfile.lock would change (for CI).
        #[arg(long)]
        check: bool,
        /// Move sources (all when none is named) to where their branch or tag is now.
        #[arg(long, value_name = "NAME", num_args = 0.., conflicts_with = "check")]
        update: Option<Vec<String>>,
    },
    /// The sources (`[source.NAME]`): pinned commit, what the cache holds, working copies
    /// in their place.
    Sources {
        /// Ask each repository whether its branch or tag moved since the pin.
        #[arg(long)]
        fetch: bool,
    },
    /// List releases (git tags) with their environment hashes.
    Releases,
    /// Check that Docker and libvirt are reachable and whether VMs get KVM or emulation.
    Doctor {
        /// libvirt connection to check.
        #[arg(long, default_value = "qemu:///system", env = "HDEV_LIBVIRT_URI")]
        libvirt_uri: String,
    },
    /// Show what `up` would change, machine by machine.
    Plan,
    /// Create, start and provision the machines; a second run changes nothing.
    Up {
        /// Machine operations at once (default: `parallel` in `[env]`).
        #[arg(long)]
        parallel: Option<usize>,
        /// Refuse when the inputs no longer match Envfile.lock.
        #[arg(long)]
        locked: bool,
        /// Bring up exactly this release (git tag) as this folder's environment.
        #[arg(long, value_name = "TAG")]
        at: Option<String>,
        /// With `--at` or `--from`: refuse, before any machine is touched, unless the release
        /// or the archive has this hash.
        #[arg(long, value_name = "HASH")]
        expect_hash: Option<String>,
        /// Bring up the environment packed in this archive (`hdev export`), with no network
        /// and no recipe: unpacked into `--dir`, its boxes taken from the archive, verified.
        #[arg(long, value_name = "FILE", conflicts_with = "at")]
        from: Option<PathBuf>,
        /// With `--from`: the folder to unpack into (default: one named after the
        /// environment, here); an earlier interrupted `up --from` into it carries on.
        #[arg(long, value_name = "DIR", requires = "from")]
        dir: Option<PathBuf>,
        /// Provision every machine created, even one whose per-machine hash the
        /// provisioned-state cache holds, and keep nothing in it.
        #[arg(long)]
        no_cache: bool,
    },
    /// Pack the environment into one archive named after its hash: the Envfile, a lock
    /// pinning every box, every file provisioning reads, the synced folders and the boxes.
    Export {
        /// The archive to write (default: `NAME-HASH12.hdev.tar` in this folder).
        #[arg(short = 'o', long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Name the boxes by digest without carrying them (a small archive; whoever
        /// unpacks it needs the boxes in their store).
        #[arg(long)]
        without_boxes: bool,
    },
    /// Move the running environment to a release (default: the latest tag), recreating only
    /// machines whose hash changed.
    Update { tag: Option<String> },
    /// A citation of the environment (BibTeX and plain text): its hash and, when HEAD is at
    /// a release tag, the tag, commit and Software Heritage identifier of the tagged tree.
    Cite {
        /// What to print (default: BibTeX, then plain text); `--json` means `json`.
        #[arg(long, value_enum)]
        format: Option<releasecmds::CiteFormat>,
    },
    /// Test a throwaway copy of HEAD and tag it only when every `[[test]]` check passes.
    Release {
        tag: String,
        /// Seconds a check may run when it sets no `timeout`.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// Run the `[[test]]` checks against the running environment.
    Test {
        /// Only these checks (by name).
        names: Vec<String>,
        /// Also write a JUnit XML report.
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
        /// Seconds a check may run when it sets no `timeout`.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// Bring up a throwaway copy, run the checks (and CMD), always tear it down.
    Ci {
        /// Also write a JUnit XML report.
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
        /// Keep the copy when it fails, for debugging.
        #[arg(long)]
        keep_on_failure: bool,
        /// Remove kept and leftover copies of this folder, and do nothing else.
        #[arg(long)]
        clean: bool,
        /// Seconds a check may run when it sets no `timeout`.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
        /// Provision the copy's machines from scratch: do not use the provisioned-state
        /// cache (which copies use by default) and keep nothing in it.
        #[arg(long)]
        no_cache: bool,
        /// A host command run against the copy after the checks (`HDEV_INSTANCE` names it).
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// Check that the running environment was built from exactly HASH (default: the
    /// Envfile's), reporting every difference.
    Verify {
        hash: Option<String>,
        /// Also check that no machine drifted from its baseline, VM file contents compared
        /// (not only their size and time).
        #[arg(long)]
        deep: bool,
    },
    /// Each machine's state, address, ports and baseline, read from the engines; drift as
    /// last checked, with its age (no guest is asked).
    Status {
        /// Check every machine's drift now (a `docker diff` per container, a round trip
        /// per VM), and record it.
        #[arg(long)]
        drift: bool,
    },
    /// The topology as a picture: machines by host and layer along `depends_on`, networks
    /// as buses with addresses, published ports, and each machine's state in colour and words.
    Graph {
        /// What to write (default: svg; `--json` means json).
        #[arg(long, value_enum)]
        format: Option<render::graph::GraphFormat>,
        /// Write it to FILE instead of standard output.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
        /// Read no engine: every machine drawn as not created (the README's picture).
        #[arg(long, hide = true)]
        offline: bool,
    },
    /// A live dashboard in the browser: the picture with states kept live, details, logs,
    /// checks, and actions (reset, snapshots, halt, up, test), on 127.0.0.1 behind a token.
    Ui {
        /// Port on 127.0.0.1 (0: any free port).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Print the address only; do not open a browser.
        #[arg(long)]
        no_open: bool,
    },
    /// Run a command in a machine; its exit code is hdev's.
    Exec {
        machine: String,
        /// The command and its arguments, after `--`.
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// An interactive shell in a machine.
    Ssh { machine: String },
    /// Output of the machines' main processes.
    Logs {
        machine: Option<String>,
        /// Keep following new output (`-F`: `-f` is the global `--file`).
        #[arg(short = 'F', long)]
        follow: bool,
        /// Only the last N lines.
        #[arg(long)]
        tail: Option<u32>,
    },
    /// Run provisioning again on running machines.
    Provision { machine: Option<String> },
    /// Stop every machine; `up` starts them again.
    Halt,
    /// Remove everything this environment created in the engines.
    Destroy {
        /// Do not ask (hdev asks only on a terminal; `-y`, as `-f` is the global `--file`).
        #[arg(short = 'y', long)]
        force: bool,
    },
    /// Remove leftovers of environments whose folder is gone.
    Gc {
        /// Only say what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
    /// Capture the machines' current state as their baseline (taken after provisioning).
    Baseline { machine: Option<String> },
    /// Return machines to their baseline in seconds, without provisioning.
    Reset { machines: Vec<String> },
    /// Files added, changed and deleted since the baseline; exit 1 when there are any.
    Drift {
        machine: Option<String>,
        /// Compare VM file contents with the baseline's too (reads both trees in the
        /// guest: slower); containers' drift already lists every file written.
        #[arg(long)]
        deep: bool,
    },
    /// Save, restore, list and delete snapshots of the whole environment.
    #[command(subcommand)]
    Snapshot(snapcmds::SnapshotCmd),
    /// Build, add, list, remove, verify and prune boxes.
    #[command(subcommand)]
    Box(boxcmds::BoxCmd),
    /// List and prune the provisioned-state cache (machines as provisioning left them,
    /// by per-machine hash, that `up` creates machines from instead of provisioning).
    #[command(subcommand)]
    Cache(cachecmds::CacheCmd),
    /// Print shell completions.
    Completions { shell: clap_complete::Shell },
}

pub(crate) type CmdResult = anyhow::Result<i32>;

pub(crate) fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    let printer = Printer::new(cli.json);
    // A box build or a VM boot says how it goes while a command waits for it. On a
    // terminal a VM boots under its machine's live line (which shows the time already),
    // so only box builds, which come before those lines, print there.
    crate::output::set_progress(move |m| {
        if !printer.tty || m.starts_with("box ") {
            printer.note(m);
        }
    });
    match dispatch(&cli, &printer) {
        Ok(code) => code,
        Err(e) => report_error(&printer, &e),
    }
}

/// Sends each command to the function of its group; the match is exhaustive, so that a
/// new command cannot go unrouted.
fn dispatch(cli: &Cli, p: &Printer) -> CmdResult {
    use Command as C;
    let (file, cmd) = (cli.file.as_deref(), &cli.command);
    if let Some(h) = &cli.hosts {
        crate::project::set_hosts_arg(h.clone());
    }
    crate::project::set_use_args(cli.uses.clone());
    crate::cache::set_no_cache(matches!(
        cmd,
        C::Up { no_cache: true, .. } | C::Ci { no_cache: true, .. }
    ));
    match cmd {
        C::Init { .. }
        | C::Validate
        | C::Hash { .. }
        | C::Lock { .. }
        | C::Sources { .. }
        | C::Doctor { .. } => envfile_command(p, file, cmd),
        C::Releases
        | C::Up { .. }
        | C::Update { .. }
        | C::Release { .. }
        | C::Cite { .. }
        | C::Export { .. } => release_command(p, file, cmd),
        C::Test { .. } | C::Ci { .. } | C::Verify { .. } => check_command(p, file, cmd),
        C::Plan
        | C::Status { .. }
        | C::Graph { .. }
        | C::Ui { .. }
        | C::Exec { .. }
        | C::Ssh { .. }
        | C::Logs { .. }
        | C::Provision { .. }
        | C::Halt
        | C::Destroy { .. }
        | C::Gc { .. } => machine_command(p, file, cmd),
        C::Baseline { .. } | C::Reset { .. } | C::Drift { .. } | C::Snapshot(_) => {
            snapshot_command(p, file, cmd)
        }
        C::Box(cmd) => boxcmds::run(p, cmd),
        C::Cache(cmd) => cachecmds::run(p, cmd),
        C::Completions { shell } => {
            clap_complete::generate(*shell, &mut Cli::command(), "hdev", &mut std::io::stdout());
            Ok(0)
        }
    }
}

/// `init`, `validate`, `hash`, `lock`, `sources`, `doctor`.
fn envfile_command(p: &Printer, file: Option<&Path>, cmd: &Command) -> CmdResult {
    match cmd {
        Command::Init {
            template,
            list,
            force,
        } => envcmds::init(p, template, *list, *force),
        Command::Validate => envcmds::validate(p, file),
        Command::Hash { explain, short } => envcmds::hash(p, file, *explain, *short),
        Command::Lock { check, update } => envcmds::lock(p, file, *check, update.as_deref()),
        Command::Sources { fetch } => envcmds::sources(p, file, *fetch),
        Command::Doctor { libvirt_uri } => doctor::doctor(p, libvirt_uri, file),
        _ => unreachable!("`dispatch` routes only Envfile commands here"),
    }
}

/// `releases`, `up`, `update`, `release`, `cite`.
fn release_command(p: &Printer, file: Option<&Path>, cmd: &Command) -> CmdResult {
    match cmd {
        Command::Releases => releasecmds::releases(p, file),
        Command::Up {
            parallel,
            locked,
            at,
            expect_hash,
            from,
            dir,
            ..
        } => {
            let up = releasecmds::UpArgs {
                parallel: *parallel,
                locked: *locked,
                at: at.as_deref(),
                expect_hash: expect_hash.as_deref(),
                from: from.as_deref(),
                dir: dir.as_deref(),
            };
            releasecmds::up(p, file, &up)
        }
        Command::Export {
            output,
            without_boxes,
        } => releasecmds::export(p, file, output.clone(), *without_boxes),
        Command::Update { tag } => releasecmds::update(p, file, tag.as_deref()),
        Command::Release { tag, timeout } => releasecmds::release(p, file, tag, *timeout),
        Command::Cite { format } => releasecmds::cite(p, file, *format),
        _ => unreachable!("`dispatch` routes only release commands here"),
    }
}

/// `test`, `ci`, `verify`.
fn check_command(p: &Printer, file: Option<&Path>, cmd: &Command) -> CmdResult {
    match cmd {
        Command::Test {
            names,
            junit,
            timeout,
        } => cicmds::test(p, file, junit.as_deref(), *timeout, names),
        Command::Ci {
            junit,
            keep_on_failure,
            clean,
            timeout,
            command,
            ..
        } => {
            let args = cicmds::CiArgs {
                junit: junit.as_deref(),
                keep_on_failure: *keep_on_failure,
                clean: *clean,
                timeout: *timeout,
                command,
            };
            cicmds::ci(p, file, &args)
        }
        Command::Verify { hash, deep } => cicmds::verify(p, file, hash.as_deref(), *deep),
        _ => unreachable!("`dispatch` routes only check commands here"),
    }
}

/// `plan`, `status`, `graph`, `ui`, `exec`, `ssh`, `logs`, `provision`, `halt`, `destroy`, `gc`.
fn machine_command(p: &Printer, file: Option<&Path>, cmd: &Command) -> CmdResult {
    match cmd {
        Command::Plan => machinecmds::plan_cmd(p, file),
        Command::Status { drift } => machinecmds::status(p, file, *drift),
        Command::Graph {
            format,
            output,
            offline,
        } => machinecmds::graph(p, file, *format, output.as_deref(), *offline),
        Command::Ui { port, no_open } => {
            let opts = crate::ui::Options {
                port: *port,
                open_browser: !*no_open,
            };
            crate::ui::serve(p, file, opts)
        }
        Command::Exec { machine, command } => machinecmds::exec(p, file, machine, command),
        Command::Ssh { machine } => machinecmds::ssh(p, file, machine),
        Command::Logs {
            machine,
            follow,
            tail,
        } => machinecmds::logs(p, file, machine.as_deref(), *follow, *tail),
        Command::Provision { machine } => machinecmds::provision(p, file, machine.as_deref()),
        Command::Halt => machinecmds::halt(p, file),
        Command::Destroy { force } => machinecmds::destroy(p, file, *force),
        Command::Gc { dry_run } => machinecmds::gc(p, *dry_run),
        _ => unreachable!("`dispatch` routes only machine commands here"),
    }
}

/// `baseline`, `reset`, `drift`, `snapshot`.
fn snapshot_command(p: &Printer, file: Option<&Path>, cmd: &Command) -> CmdResult {
    match cmd {
        Command::Baseline { machine } => snapcmds::baseline(p, file, machine.as_deref()),
        Command::Reset { machines } => snapcmds::reset(p, file, machines),
        Command::Drift { machine, deep } => snapcmds::drift(p, file, machine.as_deref(), *deep),
        Command::Snapshot(cmd) => snapcmds::snapshot(p, file, cmd),
        _ => unreachable!("`dispatch` routes only snapshot commands here"),
    }
}

/// Prints an error: Envfile problems with their places, anything else as a cause chain.
pub(crate) fn report_error(p: &Printer, e: &anyhow::Error) -> i32 {
    if let Some(crate::project::ProjectError::Load(crate::envfile::LoadError::Invalid(d))) =
        e.downcast_ref::<crate::project::ProjectError>()
    {
        if p.json {
            p.json(&serde_json::json!({ "ok": false, "problems": d.to_json() }));
        } else {
            eprint!("{}", d.render(p.color));
        }
        return 1;
    }
    if p.json {
        let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
        p.json(&serde_json::json!({ "ok": false, "error": chain }));
    } else {
        eprintln!("{} {e}", p.red("error:"));
        for cause in e.chain().skip(1) {
            eprintln!("  caused by: {cause}");
        }
    }
    1
}
