use clap::Parser;

fn main() {
    return_freed_memory();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SYMDEPOT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = symdepot::cli::Cli::parse();
    if let Err(e) = symdepot::commands::run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// Makes glibc's malloc give freed memory back to the system. An upload's
/// worker threads allocate and free buffers of a few hundred KiB member after
/// member; glibc's adaptive thresholds then rise (to 32 MiB for mmap, 64 MiB
/// for trimming), the buffers come from per-thread arenas that are not
/// trimmed, and the peak RSS grew with the number of members: 60-105 MB for
/// 2,000 members (benchmarks.md, figure 7). A fixed trim threshold (which
/// also fixes the mmap threshold at its 128 KiB default) keeps it flat:
/// 16 MB for the same upload.
fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a tuning parameter; it is called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, 4 << 20);
    }
}
