fn main() {
    return_freed_memory();
    raise_open_file_limit();
    let cli = symdepot::cli::Cli::from_env();
    if !matches!(cli.command, symdepot::cli::Command::Serve { .. }) {
        // A command's output piped into `head` ends it quietly, as any
        // command-line tool; the daemon keeps Rust's default (a closed
        // connection is an error to handle, not a signal).
        // SAFETY: setting a signal's disposition to its default, before any thread starts.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    if let symdepot::cli::Command::WalkMinidump {
        max_memory, parent, ..
    } = &cli.command
    {
        limit_walker(*max_memory, *parent);
    }
    if let Err(e) = symdepot::commands::run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// Keeps glibc's malloc from holding on to freed memory. An upload's worker
/// threads allocate and free buffers of a few hundred KiB member after member;
/// with glibc's defaults each thread gets an arena of its own, the adaptive
/// thresholds rise (to 32 MiB for mmap, 64 MiB for trimming), nothing is
/// given back, and the peak RSS grew with the number of members: 60-105 MB
/// for 2,000 members (benchmarks.md, figure 7). One arena, trimmed above
/// 4 MiB, keeps it flat (16-25 MB). The mmap threshold stays above the 256 KiB
/// transfer buffers: mapping and faulting one in for every chunk of a large
/// download halved its throughput (figure 2).
fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets tuning parameters; it is called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 4 << 20);
    }
}

/// Bounds a minidump walker before it reads anything: its data (heap and
/// private mappings) to `bytes` — an allocation beyond it fails and the walker
/// ends, which its parent reports as the walk needing more memory than
/// allowed — its CPU time to a little over the walk's time cap, and its life
/// to its parent's, the daemon `parent` (killed if it dies, however it dies). Exits when a
/// limit cannot be set: a walker must not run unbounded.
fn limit_walker(bytes: u64, parent: u32) {
    #[cfg(unix)]
    {
        let cpu = symdepot::symbolicate::walker::TIME_CAP.as_secs() + 10;
        for (resource, soft, hard) in [
            (libc::RLIMIT_DATA, bytes, bytes),
            (libc::RLIMIT_CPU, cpu, cpu + 5),
        ] {
            let lim = libc::rlimit {
                rlim_cur: soft,
                rlim_max: hard,
            };
            // SAFETY: setrlimit only reads the struct it is given.
            if unsafe { libc::setrlimit(resource, &lim) } != 0 {
                eprintln!(
                    "error: a limit cannot be set: {}",
                    std::io::Error::last_os_error()
                );
                std::process::exit(1);
            }
        }
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number and touches no memory.
        let set = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
        // The parent may have died before the signal was asked for.
        if set != 0 || std::os::unix::process::parent_id() != parent {
            std::process::exit(1);
        }
    }
}

/// Raises the soft limit on open files to the hard limit. Many systems start
/// processes at a soft limit of 1 024 while allowing far more; the daemon
/// holds a descriptor per connection (up to `max_connections`, default 1 024)
/// besides its index, uploads and ingest workers, so the default would be the
/// first limit it met under load. Failure leaves the limit as it was.
fn raise_open_file_limit() {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct it is given, which lives on this stack.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0
            || lim.rlim_cur >= lim.rlim_max
        {
            return;
        }
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: setrlimit only reads the struct it is given.
        unsafe {
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}
