//! What each subcommand does. `main` parses the command line and calls [`run`].

use std::time::Duration;

use anyhow::{Context, bail};

use crate::cli::{Cli, Command, TokenCommand};
use crate::config::{Config, Overrides};
use crate::settings::{IngestLimits, StoreSettings};
use crate::store::Store;
use crate::store::gc::GcMode;
use crate::store::tokens::{MAX_LIFETIME_DAYS, MAX_LIFETIME_MS, NewToken};
use crate::store::verify::VerifyOptions;
use crate::units::{parse_duration, rfc3339};

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::WalkMinidump { page, .. } = &cli.command {
        // The walker needs no data dir or configuration (its limits are set by `main`).
        let _log = crate::logging::init(crate::logging::LogFormat::Text);
        return crate::symbolicate::walker::walker_main(*page).context("walking a minidump");
    }
    match &cli.command {
        Command::Completions { shell } => return completions(*shell),
        Command::Man { dir } => return man_pages(dir),
        _ => {}
    }
    if let Command::Upload {
        path,
        url,
        token,
        is_try,
        auto,
        max_size,
        attempts,
    } = &cli.command
    {
        // The client needs no data dir or configuration.
        let _log = crate::logging::init(crate::logging::LogFormat::Text);
        let max_size = crate::units::parse_size(max_size)
            .with_context(|| format!("--max-size {max_size:?}"))?;
        let opts = crate::client::UploadOptions {
            url: url.clone(),
            token: token.clone(),
            is_try: *is_try,
            auto: *auto,
            max_size,
            attempts: *attempts,
            backoff: Duration::from_secs(1),
        };
        let done = crate::client::upload(path, &opts)?;
        let mut total = crate::client::Uploaded::default();
        for zip in &done {
            println!("{}", zip.id);
            total.add(zip);
        }
        if done.len() > 1 {
            eprintln!("{} uploads: {}", done.len(), total.counts());
        }
        return Ok(());
    }
    let (listen, inbox) = match &cli.command {
        Command::Serve { listen, inbox } => (listen.clone(), inbox.clone()),
        _ => (None, None),
    };
    let overrides = Overrides {
        data_dir: cli.data_dir.clone(),
        listen,
        inbox,
    };
    let config = Config::load(cli.config.as_deref(), std::env::vars(), &overrides)?;
    // Dropped when the command ends: what is still queued is written.
    let _log = crate::logging::init(config.log_format);
    for warning in crate::config::unknown_env(std::env::vars()) {
        tracing::warn!("{warning}");
    }
    match cli.command {
        Command::Serve { .. } => serve(config),
        Command::Upload { .. }
        | Command::WalkMinidump { .. }
        | Command::Completions { .. }
        | Command::Man { .. } => unreachable!("handled above"),
        Command::Token { action } => token(config, action),
        Command::Ingest { paths, is_try } => ingest(config, &paths, is_try),
        Command::Id { file, inject } => id(&file, inject),
        Command::Gc { dry_run, force } => gc(config, dry_run, force),
        Command::Verify { repair, quick } => verify(config, VerifyOptions { repair, quick }),
        Command::Reindex { from_bucket } => reindex(config, from_bucket),
        Command::Export {
            layout,
            plain,
            zip,
            max_size,
            index2,
            upload,
            module,
            since,
            is_try,
            namespace,
        } => export(
            config,
            &layout,
            plain,
            zip,
            &max_size,
            index2,
            ExportFilterArgs {
                upload,
                module,
                since,
                is_try,
                namespace,
            },
        ),
        Command::Import {
            dir,
            is_try,
            namespace,
        } => import(config, &dir, is_try, namespace.as_deref()),
        Command::GenSym { keys, all } => gen_sym(config, &keys, all),
        Command::Prefetch { inputs, list, jobs } => prefetch(
            config,
            &crate::prefetch::Options {
                inputs,
                lists: list,
                jobs: usize::from(jobs),
            },
        ),
        Command::Migrate { to_config, batch } => migrate(config, &to_config, batch),
        Command::Delete {
            key,
            is_try,
            upload,
            namespace,
        } => delete(config, key, is_try, upload, namespace.as_deref()),
    }
}

/// Prints the completion script for `shell`.
fn completions(shell: clap_complete::Shell) -> anyhow::Result<()> {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    clap_complete::generate(shell, &mut cmd, "symdepot", &mut std::io::stdout());
    Ok(())
}

/// Writes `symdepot.1` and a page per command (`symdepot-serve.1`, …) into `dir`.
fn man_pages(dir: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("making {}", dir.display()))?;
    let cmd = <Cli as clap::CommandFactory>::command();
    clap_mangen::generate_to(cmd, dir)
        .with_context(|| format!("writing pages to {}", dir.display()))
}

fn open_store(config: Config) -> anyhow::Result<Store> {
    let dir = config.data_dir.display().to_string();
    Store::open_with(StoreSettings::new(&config))
        .with_context(|| format!("opening the data directory {dir}"))
}

/// Opens the store of a command that reads or maintains one: a data
/// directory that does not exist is a mistyped path, never a new, empty
/// store to answer from. (`serve`, `ingest`, `import` and `token create`
/// make a store where there is none.)
fn open_existing_store(config: Config) -> anyhow::Result<Store> {
    if !config.data_dir.is_dir() {
        bail!(
            "the data directory {} does not exist; check --data-dir (or SYMDEPOT_DATA_DIR, \
             data_dir in the configuration). A store is made by symdepot serve, ingest, import \
             or token create",
            config.data_dir.display()
        );
    }
    open_store(config)
}

fn serve(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let daemon = crate::daemon::Daemon::start(config).await?;
        tracing::info!("symdepot listening on http://{}", daemon.addr());
        // systemd's Type=notify: the service is started once the listener is
        // bound and the store open (nothing is sent without NOTIFY_SOCKET).
        if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
            tracing::warn!(error = %e, "telling the service manager we are ready");
        }
        daemon.run_until_signal().await
    })
}

/// `token create --expires`: a duration from 1 s to 36500 days, or `never`.
fn token_lifetime(expires: &str) -> anyhow::Result<Option<i64>> {
    if expires == "never" {
        return Ok(None);
    }
    let rule = || {
        format!(
            "--expires {expires:?}: expected a lifetime from 1s to {MAX_LIFETIME_DAYS}d \
             (100 years), e.g. 365d, 12h or 2w, or never"
        )
    };
    let d = parse_duration(expires).with_context(rule)?;
    let ms = i64::try_from(d.as_millis())
        .ok()
        .filter(|ms| (1..=MAX_LIFETIME_MS).contains(ms));
    Ok(Some(ms.with_context(rule)?))
}

fn token(config: Config, action: TokenCommand) -> anyhow::Result<()> {
    let store = if matches!(action, TokenCommand::Create { .. }) {
        open_store(config)?
    } else {
        open_existing_store(config)?
    };
    match action {
        TokenCommand::Create {
            permissions,
            user,
            expires,
            note,
        } => {
            let expires_in_ms = token_lifetime(&expires)?;
            let new = NewToken {
                user: &user,
                permissions: &permissions,
                note: &note,
                expires_in_ms,
                expires_by: None,
            };
            let (token, secret) = store.create_token(&new)?;
            println!(
                "token {} for {} with {}",
                token.id,
                token.user,
                token.permissions.join(", ")
            );
            if let Some(at) = token.expires_at {
                println!("expires {}", rfc3339(at));
            }
            println!("{secret}");
        }
        TokenCommand::List => {
            println!(
                "{:>5}  {:<16} {:<40} {:<25} {:<25} NOTE",
                "ID", "USER", "PERMISSIONS", "EXPIRES", "STATE"
            );
            for t in store.list_tokens()? {
                let expires = t.expires_at.map_or_else(|| "never".to_string(), rfc3339);
                let state = match t.revoked_at {
                    Some(at) => format!("revoked {}", rfc3339(at)),
                    None if t.expires_at.is_some_and(|e| e <= crate::store::now_ms()) => {
                        "expired".into()
                    }
                    None => "active".into(),
                };
                println!(
                    "{:>5}  {:<16} {:<40} {:<25} {:<25} {}",
                    t.id,
                    t.user,
                    t.permissions.join(","),
                    expires,
                    state,
                    t.note
                );
            }
        }
        TokenCommand::Revoke { id } => {
            let was = store.list_tokens()?.into_iter().find(|t| t.id == id);
            match was.and_then(|t| t.revoked_at) {
                Some(at) => println!("token {id} was already revoked at {}", rfc3339(at)),
                None if store.revoke_token(id)? => println!("token {id} revoked"),
                None => bail!("there is no token with id {id}"),
            }
        }
    }
    Ok(())
}

/// `ingest`: one upload record per path given (a folder's record covers
/// every file below it); every path is read before anything is ingested.
fn ingest(config: Config, paths: &[std::path::PathBuf], is_try: bool) -> anyhow::Result<()> {
    let limits = IngestLimits::new(&config);
    let store = open_store(config)?;
    let to = crate::ingest::Ingest {
        store: &store,
        limits: &limits,
    };
    let mut given = Vec::new();
    for p in paths {
        let mut files = Vec::new();
        collect_files(p, &mut files).with_context(|| format!("reading {}", p.display()))?;
        given.push((p, files));
    }
    let count = given.iter().map(|(_, files)| files.len() as u64).sum();
    let mut bar = crate::progress::bar("ingest", Some(count));
    let (mut stored, mut skipped, mut failed) = (0, 0, 0);
    for (path, files) in given {
        let batch = ingest_path(to, path, &files, is_try, &mut bar)?;
        bar.suspend(|| print_batch(&batch));
        stored += batch.report.uploaded_keys.len();
        skipped += batch.report.skipped_keys.len();
        failed += batch.failed.len();
    }
    bar.finish_and_clear();
    println!("{stored} stored, {skipped} already stored, {failed} failed");
    if failed > 0 {
        bail!("{failed} file(s) could not be ingested");
    }
    Ok(())
}

/// The files of one path given to `ingest`, as one upload by `cli` named by
/// the path as given.
fn ingest_path(
    to: crate::ingest::Ingest<'_>,
    path: &std::path::Path,
    files: &[std::path::PathBuf],
    is_try: bool,
    progress: &mut dyn crate::store::Progress,
) -> anyhow::Result<crate::ingest::batch::Batch> {
    use crate::store::{Namespace, UploadEnd, UploadFinish, UploadStart};
    let start = UploadStart {
        user: "cli".into(),
        filename: Some(path.display().to_string()),
        try_symbols: is_try,
        ..UploadStart::default()
    };
    let record = to.store.begin_upload(&start)?;
    let ns = Namespace::from_try(is_try);
    let result = crate::ingest::batch::ingest_batch(to, files, ns, Some(record.id()), progress);
    let end = match &result {
        Ok(batch) => batch.record_end(),
        Err(e) => UploadEnd::Failed {
            error: e,
            message: e.to_string(),
        },
    };
    let fin = UploadFinish {
        filename: None,
        download_url: None,
        size: result.as_ref().map_or(0, |b| b.size),
        try_symbols: is_try,
        end,
    };
    record.finish(to.store, &fin)?;
    Ok(result?)
}

/// What `ingest` did with one path: a line per key, a line per failed file.
fn print_batch(batch: &crate::ingest::batch::Batch) {
    for k in &batch.report.uploaded_keys {
        println!("stored   {k}");
    }
    for k in &batch.report.skipped_keys {
        println!("skipped  {k}");
    }
    for (file, e) in &batch.failed {
        eprintln!("failed   {}: {e}", file.display());
    }
}

fn collect_files(path: &std::path::Path, out: &mut Vec<std::path::PathBuf>) -> std::io::Result<()> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_dir() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    collect_below(path, out)
}

/// The regular files below a folder given to `ingest`. Symbolic links inside
/// it are not followed (as by `import`): a folder brings in only what is in it.
fn collect_below(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.path());
    for e in entries {
        let t = e.file_type()?;
        if t.is_dir() {
            collect_below(&e.path(), out)?;
        } else if t.is_file() {
            out.push(e.path());
        }
    }
    Ok(())
}

fn id(file: &std::path::Path, inject: bool) -> anyhow::Result<()> {
    use crate::identity::{self, Kind, js, lookup};
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if file.is_dir() {
        bail!(
            "{} is a directory; symdepot id reads one file (symdepot ingest takes directories)",
            file.display()
        );
    }
    if inject {
        let content = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        let (uuid, changed) = js::inject_debug_id(&content)?;
        if let Some(new) = changed {
            let tmp = file.with_extension("symdepot-tmp");
            std::fs::write(&tmp, new)?;
            std::fs::rename(&tmp, file)?;
        }
        println!("{uuid}");
        return Ok(());
    }
    let f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let id = identity::identify(f, &name);
    println!("kind: {}", id.kind);
    let fields = [
        ("os", &id.os),
        ("arch", &id.arch),
        ("debug_file", &id.debug_file),
        ("debug_id", &id.debug_id),
        ("code_file", &id.code_file),
        ("code_id", &id.code_id),
        ("build_id", &id.build_id),
        ("generator", &id.generator),
    ];
    for (label, value) in fields {
        if let Some(v) = value {
            println!("{label}: {v}");
        }
    }
    println!("has_debug_info: {}", id.has_debug_info);
    println!("has_code: {}", id.has_code);
    for r in &id.ids {
        let arch = r
            .arch
            .as_deref()
            .map(|a| format!(" ({a})"))
            .unwrap_or_default();
        println!(
            "debug_ref: {} {}{arch}",
            r.debug_file.as_deref().unwrap_or("-"),
            r.debug_id
        );
    }
    match crate::ingest::zipfile::auto_key(&id, &name) {
        Ok(key) => {
            println!("key: {}", key.key());
            for k in lookup::lookup_keys(&key.key(), &id) {
                println!("lookup: {}", lookup::display(&k));
            }
        }
        Err(why) => println!("key: none ({why})"),
    }
    if id.kind == Kind::SourceMap && id.code_id.is_none() {
        let content = std::fs::read(file)?;
        println!("deterministic_id: {}", js::deterministic_id(&content));
    }
    Ok(())
}

fn gc(config: Config, dry_run: bool, force: bool) -> anyhow::Result<()> {
    let store = open_existing_store(config)?;
    let mode = match (dry_run, force) {
        (true, _) => GcMode::DryRun,
        (false, true) => GcMode::Force,
        (false, false) => GcMode::Run,
    };
    let r = store.gc(std::time::SystemTime::now(), mode)?;
    let verb = if dry_run { "would remove" } else { "removed" };
    for (ns, key) in &r.expired {
        println!("{verb} expired {ns} key {key}");
    }
    for p in &r.entries {
        println!("{verb} unindexed entry {}", p.display());
    }
    for p in &r.blobs {
        println!("{verb} unreferenced blob {}", p.display());
    }
    for p in &r.temp {
        println!("{verb} temp file {}", p.display());
    }
    println!(
        "{}: {} expired keys, {} unindexed entries, {} blobs ({} bytes), {} temp files",
        if dry_run { "dry run" } else { "gc" },
        r.expired.len(),
        r.entries.len(),
        r.blobs.len(),
        r.blob_bytes,
        r.temp.len()
    );
    Ok(())
}

fn verify(config: Config, opts: VerifyOptions) -> anyhow::Result<()> {
    let store = open_existing_store(config)?;
    let bar = crate::progress::bar("verify", Some(store.key_count()?));
    let r = store.verify_with(opts, &mut |done| bar.set_position(done), &mut |d| {
        let fixed = if d.repaired { " (repaired)" } else { "" };
        bar.suspend(|| println!("DAMAGED {} {}: {}{fixed}", d.namespace, d.key, d.problem));
    });
    bar.finish_and_clear();
    let r = r?;
    for p in &r.quarantined {
        println!("quarantined {}", p.display());
    }
    let g = &r.reclaimable;
    println!(
        "{} keys, {} blobs checked; {} damaged ({} unrepaired); reclaimable by gc: {} blobs, {} entries, {} temp files",
        r.keys,
        r.blobs,
        r.damaged,
        r.unrepaired,
        g.blobs.len(),
        g.entries.len(),
        g.temp.len()
    );
    if r.unrepaired > 0 {
        bail!("the store is damaged: {} key(s)", r.unrepaired);
    }
    Ok(())
}

fn reindex(config: Config, from_bucket: bool) -> anyhow::Result<()> {
    // The one command that runs on a lost or empty index: it rebuilds it.
    let dir = config.data_dir.display().to_string();
    let store = Store::open_to_rebuild(StoreSettings::new(&config))
        .with_context(|| format!("opening the data directory {dir}"))?;
    let mut bar = crate::progress::bar("reindex", None);
    let rebuilt = rebuild(&store, from_bucket, &mut bar);
    bar.finish_and_clear();
    let (n, skipped) = rebuilt?;
    for (what, why) in &skipped {
        eprintln!("skipped {what}: {why}");
    }
    println!("reindexed {n} keys, skipped {}", skipped.len());
    Ok(())
}

/// The index rebuilt from the layout tree, or from the bucket's manifests:
/// the keys indexed and what was skipped, with why.
fn rebuild(
    store: &Store,
    from_bucket: bool,
    bar: &mut indicatif::ProgressBar,
) -> anyhow::Result<(u64, Vec<(String, String)>)> {
    if from_bucket {
        let r = store.reindex_from_bucket(bar)?;
        bar.suspend(|| println!("{} upload records restored", r.uploads));
        return Ok((r.keys, r.skipped));
    }
    let (n, skipped) = store.reindex(bar)?;
    let shown = skipped
        .into_iter()
        .map(|(p, why)| (p.display().to_string(), why));
    Ok((n, shown.collect()))
}

fn delete(
    config: Config,
    key: Option<String>,
    is_try: bool,
    upload: Option<i64>,
    namespace: Option<&str>,
) -> anyhow::Result<()> {
    use crate::store::Namespace;
    use crate::store::gc::DeleteTarget;
    let namespace = match namespace {
        None => Namespace::from_try(is_try),
        Some(ns) => Namespace::parse(ns)
            .with_context(|| format!("--namespace: {ns:?} is not release, try or cache"))?,
    };
    let store = open_existing_store(config)?;
    let target = match (key, upload) {
        (_, Some(id)) => DeleteTarget::Upload(id),
        (Some(key), None) => DeleteTarget::Key { namespace, key },
        (None, None) if namespace == Namespace::Cache => DeleteTarget::Namespace(namespace),
        (None, None) => {
            bail!("name a key, --upload <id>, or --namespace cache (every fetched file)")
        }
    };
    let gone = store.delete_keys(&target, "cli")?;
    for k in &gone {
        println!("deleted {k}");
    }
    if gone.is_empty() {
        bail!("nothing matched");
    }
    Ok(())
}

/// The filter flags of `export`.
struct ExportFilterArgs {
    namespace: Option<String>,
    upload: Option<i64>,
    module: Option<String>,
    since: Option<String>,
    is_try: bool,
}

fn export(
    config: Config,
    layout: &str,
    plain: Option<std::path::PathBuf>,
    zip: Option<std::path::PathBuf>,
    max_size: &str,
    index2: bool,
    f: ExportFilterArgs,
) -> anyhow::Result<()> {
    use crate::transfer::{ExportFilter, ExportLayout, export_tree, export_zips};
    let now = time::OffsetDateTime::now_utc();
    let since_ms = (f.since.as_deref())
        .map(|v| crate::filters::since("--since", v, now))
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let namespace = match f.namespace.as_deref() {
        None => crate::store::Namespace::from_try(f.is_try),
        Some(ns) => crate::store::Namespace::parse(ns)
            .with_context(|| format!("--namespace: {ns:?} is not release, try or cache"))?,
    };
    let filter = ExportFilter {
        namespace,
        upload: f.upload,
        module: f.module,
        since_ms,
    };
    let store = open_existing_store(config)?;
    if let Some(dir) = zip {
        let max = crate::units::parse_size(max_size)
            .with_context(|| format!("--max-size {max_size:?}"))?;
        let mut bar = crate::progress::bar("export", None);
        let zips = export_zips(&store, &dir, max, &filter, &mut bar);
        bar.finish_and_clear();
        for z in zips? {
            println!("{}", z.display());
        }
        return Ok(());
    }
    let layout = match layout {
        "breakpad" => ExportLayout::Breakpad,
        "symstore" => ExportLayout::SymStore { index2 },
        "debuginfod" => ExportLayout::Debuginfod,
        other => bail!("--layout {other:?}: expected breakpad, symstore or debuginfod"),
    };
    let dir = plain.context("--plain <DIR> or --zip <DIR>")?;
    let mut bar = crate::progress::bar("export", None);
    let report = export_tree(&store, &dir, layout, &filter, &mut bar);
    bar.finish_and_clear();
    let report = report?;
    for key in &report.refused {
        eprintln!("not exported {key}: its path would leave the export folder");
    }
    println!(
        "exported {} files from {} keys into {}",
        report.files,
        report.keys,
        dir.display()
    );
    Ok(())
}

/// `gen-sym`: the summary on stdout; an error when anything failed.
fn gen_sym(config: Config, keys: &[String], all: bool) -> anyhow::Result<()> {
    let limits = IngestLimits::new(&config);
    let max = config.max_sym_generation_bytes;
    let store = open_existing_store(config)?;
    let s = crate::symbolicate::gensym::generate_ahead(&store, &limits, keys, all, max)?;
    println!(
        "{} generated, {} already there, {} without a debug file in the store, {} failed",
        s.generated,
        s.already_there,
        s.no_debug_file,
        s.failed.len()
    );
    if !s.failed.is_empty() {
        bail!("{} .sym file(s) could not be generated", s.failed.len());
    }
    Ok(())
}

/// `prefetch`: the summary on stdout; an error when anything failed.
fn prefetch(config: Config, opts: &crate::prefetch::Options) -> anyhow::Result<()> {
    let summary = crate::prefetch::run(config, opts)?;
    println!("{summary}");
    if summary.failed > 0 || summary.bad_inputs > 0 {
        bail!(
            "{} file(s) could not be fetched, {} input(s) not understood",
            summary.failed,
            summary.bad_inputs
        );
    }
    Ok(())
}

/// `migrate --to-config`: the target store from its file alone (the
/// environment's `SYMDEPOT_*` describe the source), then the copy.
fn migrate(config: Config, to_config: &std::path::Path, batch: u32) -> anyhow::Result<()> {
    let env = std::env::vars().filter(|(k, _)| !k.starts_with("SYMDEPOT_"));
    let target = Config::load(Some(to_config), env, &Overrides::default())?;
    let on_disk = |c: &Config| c.blob_store != "s3" || c.database_url.is_empty();
    if (on_disk(&config) || on_disk(&target)) && same_dir(&config.data_dir, &target.data_dir) {
        bail!(
            "data_dir: the target configuration ({}) names the source's data directory {}; \
             give the target a data_dir of its own",
            to_config.display(),
            config.data_dir.display()
        );
    }
    let from = open_existing_store(config)?;
    // No daemon serves the target's data dir meanwhile (nor starts: a store
    // whose copy is unfinished refuses to serve).
    let _lock = crate::store::lock::DaemonLock::acquire(&target.data_dir)
        .context("the target's data directory")?;
    let dir = target.data_dir.display().to_string();
    let to = Store::open_to_migrate(StoreSettings::new(&target))
        .with_context(|| format!("opening the target store (data directory {dir})"))?;
    // A line per batch: where an interrupted run had got to.
    let report = from.migrate_to(&to, batch, &mut |p| {
        eprintln!("{} {}/{}", p.what, p.done, p.total);
    })?;
    println!(
        "copied {} keys ({} blobs, {} bytes; {} already there; {} keys the source no longer \
         has removed), {} uploads ({} members), {} tokens, {} missing symbols; verified {} keys",
        report.keys,
        report.blobs_copied,
        report.blob_bytes,
        report.blobs_present,
        report.keys_removed,
        report.uploads,
        report.members,
        report.tokens,
        report.missing,
        report.verified
    );
    Ok(())
}

/// Whether two paths name one folder (the same path where they do not exist yet).
fn same_dir(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

fn import(
    config: Config,
    dir: &std::path::Path,
    is_try: bool,
    namespace: Option<&str>,
) -> anyhow::Result<()> {
    let ns = match namespace {
        None => crate::store::Namespace::from_try(is_try),
        Some(ns) => crate::store::Namespace::parse(ns)
            .with_context(|| format!("--namespace: {ns:?} is not release, try or cache"))?,
    };
    // A mistyped folder leaves nothing behind: no store, no failed record.
    if !dir.is_dir() {
        bail!("{} is not a folder", dir.display());
    }
    let limits = IngestLimits::new(&config);
    let store = open_store(config)?;
    let to = crate::ingest::Ingest {
        store: &store,
        limits: &limits,
    };
    // One upload record for the tree, as `ingest` makes for each path: its
    // members and, on S3, its manifest (what `reindex --from-bucket` reads).
    use crate::store::{Namespace, UploadEnd, UploadFinish, UploadStart};
    let start = UploadStart {
        user: "cli".into(),
        filename: Some(dir.display().to_string()),
        try_symbols: ns == Namespace::Try,
        ..UploadStart::default()
    };
    let record = store.begin_upload(&start)?;
    let mut bar = crate::progress::bar("import", None);
    let imported = crate::transfer::import_tree(to, dir, ns, Some(record.id()), &mut bar)
        .map_err(|e| crate::error::Error::Io(std::io::Error::other(format!("{e:#}"))));
    bar.finish_and_clear();
    let end = match &imported {
        Ok(batch) => batch.record_end(),
        Err(error) => UploadEnd::Failed {
            error,
            message: error.to_string(),
        },
    };
    let fin = UploadFinish {
        filename: None,
        download_url: None,
        size: imported.as_ref().map_or(0, |b| b.size),
        try_symbols: ns == Namespace::Try,
        end,
    };
    record.finish(&store, &fin)?;
    let batch = imported?;
    for (p, why) in &batch.failed {
        eprintln!("failed   {}: {why}", p.display());
    }
    println!(
        "{} stored, {} already stored, {} failed",
        batch.report.uploaded_keys.len(),
        batch.report.skipped_keys.len(),
        batch.failed.len()
    );
    if !batch.failed.is_empty() {
        bail!("{} file(s) could not be imported", batch.failed.len());
    }
    Ok(())
}
