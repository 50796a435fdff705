//! The command line: tokens, and the daemon as a process.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::support::{sigterm, spawn_daemon, symdepot, wait_exit};

#[test]
fn token_create_list_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let out = symdepot(dir.path())
        .args([
            "token",
            "create",
            "--permission",
            "upload",
            "--permission",
            "upload_try",
        ])
        .args(["--user", "ci", "--expires", "30d", "--note", "builders"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let secret = stdout.lines().last().unwrap();
    assert_eq!(secret.len(), 32);
    assert!(
        secret
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );

    let out = symdepot(dir.path())
        .args(["token", "list"])
        .output()
        .unwrap();
    let list = String::from_utf8(out.stdout).unwrap();
    assert!(
        list.contains("ci") && list.contains("upload,upload_try") && list.contains("builders"),
        "{list}"
    );
    assert!(!list.contains(secret), "secrets are never listed");

    let out = symdepot(dir.path())
        .args(["token", "revoke", "1"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let list = String::from_utf8(
        symdepot(dir.path())
            .args(["token", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(list.contains("revoked"), "{list}");
    // Once more: said to be revoked already, and when.
    let out = symdepot(dir.path())
        .args(["token", "revoke", "1"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("token 1 was already revoked at 20"),
        "{text}"
    );

    let out = symdepot(dir.path())
        .args(["token", "revoke", "99"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let out = symdepot(dir.path())
        .args(["token", "create", "--permission", "fly"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown permission"));
}

#[test]
fn serve_logs_its_bound_address_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = spawn_daemon(dir.path());
    let resp = crate::support::http_get(format!("http://{addr}/__lbheartbeat__")).unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        dir.path().join("index.sqlite3").exists(),
        !crate::backend::on_pg()
    );
    sigterm(&child);
    assert_eq!(wait_exit(&mut child).code(), Some(0));
}

#[test]
fn sigterm_lets_an_upload_in_flight_finish() {
    let dir = tempfile::tempdir().unwrap();
    let out = symdepot(dir.path())
        .args(["token", "create", "--permission", "upload"])
        .output()
        .unwrap();
    let token = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .to_string();
    let (mut child, addr) = spawn_daemon(dir.path());

    let id = crate::support::ID_A;
    let zip = crate::support::zip_of(&[(
        &format!("slow.pdb/{id}/slow.sym"),
        &crate::support::sym("slow.pdb", id, ""),
    )]);
    let mut body = Vec::new();
    body.extend_from_slice(
        b"--XyZ\r\nContent-Disposition: form-data; name=\"symbols.zip\"; filename=\"symbols.zip\"\r\n\r\n",
    );
    body.extend_from_slice(&zip);
    body.extend_from_slice(b"\r\n--XyZ--\r\n");
    let mut conn = TcpStream::connect(&addr).unwrap();
    conn.set_read_timeout(Some(crate::support::PATIENCE))
        .unwrap();
    write!(
        conn,
        "POST /upload/ HTTP/1.1\r\nHost: x\r\nAuth-Token: {token}\r\n\
         Content-Type: multipart/form-data; boundary=XyZ\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    let (first, rest) = body.split_at(body.len() / 2);
    conn.write_all(first).unwrap();
    conn.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    sigterm(&child);
    std::thread::sleep(Duration::from_millis(300));
    conn.write_all(rest).unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    assert_eq!(wait_exit(&mut child).code(), Some(0));
}
#[test]
fn config_file_env_and_flags_reach_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("symdepot.toml");
    std::fs::write(&cfg, "listen = \"127.0.0.1:1\"\nno_such_setting = 1\n").unwrap();
    let out = symdepot(dir.path())
        .arg("--config")
        .arg(&cfg)
        .args(["token", "list"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no_such_setting"));
}

#[test]
fn a_misspelled_file_key_is_refused_with_its_line_and_a_misspelled_variable_is_warned_of() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("symdepot.toml");
    std::fs::write(
        &cfg,
        "# limits\nmax_members = 7\nmax_uplaod_bytes = \"1GiB\"\n",
    )
    .unwrap();
    let out = symdepot(dir.path())
        .arg("--config")
        .arg(&cfg)
        .args(["token", "list"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let want = "symdepot.toml:3: unknown setting \"max_uplaod_bytes\" \
                (did you mean \"max_upload_bytes\"?)";
    assert!(stderr.contains(want), "{stderr}");

    // A misspelled variable is named, with the one meant, and the daemon starts anyway.
    let mut serve = symdepot(dir.path());
    serve
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("SYMDEPOT_MAX_UPLAOD_BYTES", "1GiB");
    let (mut child, addr, log) = crate::support::spawn_keeping_log(serve, true);
    let resp = crate::support::http_get(format!("http://{addr}/__lbheartbeat__")).unwrap();
    assert_eq!(resp.status(), 200);
    let warned = "SYMDEPOT_MAX_UPLAOD_BYTES is no setting \
                  (did you mean SYMDEPOT_MAX_UPLOAD_BYTES?); ignored";
    let lines = log.lock().unwrap().join("\n");
    assert!(lines.contains(warned) && lines.contains("WARN"), "{lines}");
    sigterm(&child);
    assert_eq!(wait_exit(&mut child).code(), Some(0));
}

#[test]
fn long_commands_draw_no_progress_into_a_pipe_and_still_print_their_summaries() {
    use crate::support::{ID_A, ID_B, reindex_args, sym, zip_of};
    let work = tempfile::tempdir().unwrap();
    let at = |name: &str| work.path().join(name).display().to_string();
    let tree = work.path().join("tree").join(format!("a.pdb/{ID_A}"));
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("a.sym"), sym("a.pdb", ID_A, "")).unwrap();
    let zip = zip_of(&[(&format!("b.pdb/{ID_B}/b.sym"), &sym("b.pdb", ID_B, ""))]);
    std::fs::write(at("b.zip"), zip).unwrap();
    let missing = format!("c.pdb/{ID_A}/c.sym");
    let runs: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["import".into(), at("tree")],
            "1 stored, 0 already stored, 0 failed",
        ),
        (
            vec!["ingest".into(), at("b.zip")],
            "1 stored, 0 already stored, 0 failed",
        ),
        (
            ["export", "--layout", "breakpad", "--plain", &at("plain")]
                .map(String::from)
                .into(),
            "exported 2 files from 2 keys into",
        ),
        (
            ["export", "--zip", &at("zips")].map(String::from).into(),
            "symbols-0001.zip",
        ),
        (
            reindex_args().iter().map(|a| a.to_string()).collect(),
            "reindexed ",
        ),
        (vec!["verify".into()], " blobs checked; 0 damaged"),
        (
            vec!["gen-sym".into(), missing],
            "0 generated, 0 already there, 1 without a debug file in the store, 0 failed",
        ),
    ];
    let data = work.path().join("data");
    for (args, summary) in runs {
        let out = symdepot(&data).args(&args).output().unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(out.status.success(), "{args:?}: {stdout}{stderr}");
        assert!(stdout.contains(summary), "{args:?}: {stdout}");
        assert!(
            !stderr.contains('\r') && !stderr.contains("\x1b["),
            "{args:?} drew into a pipe: {stderr:?}"
        );
    }
}

#[test]
fn on_a_terminal_a_long_command_draws_a_bar_and_clears_it() {
    use crate::support::{ID_A, sym, zip_of};
    let work = tempfile::tempdir().unwrap();
    let (data, zip, plain) = (
        work.path().join("data"),
        work.path().join("a.zip"),
        work.path().join("plain"),
    );
    let member = format!("a.pdb/{ID_A}/a.sym");
    std::fs::write(&zip, zip_of(&[(&member, &sym("a.pdb", ID_A, ""))])).unwrap();
    crate::support::stdout_ok(symdepot(&data).arg("ingest").arg(&zip).output().unwrap());
    // `script` runs the command on a terminal of its own and copies what it shows.
    let line = format!(
        "{} --data-dir {} export --layout breakpad --plain {}",
        env!("CARGO_BIN_EXE_symdepot"),
        data.display(),
        plain.display()
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .envs(crate::backend::env_for(&data))
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{shown}");
    assert!(
        shown.contains("export ") && shown.contains("/1 "),
        "no bar: {shown:?}"
    );
    assert!(
        shown.contains("\r\x1b[2Kexported 1 files from 1 keys into"),
        "{shown:?}"
    );
}

/// Runs `symdepot ARGS` with no data dir; its stdout (it must succeed).
fn stdout_of(args: &[&str]) -> String {
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_symdepot"))
        .args(args)
        .output();
    crate::support::stdout_ok(run.unwrap())
}

#[test]
fn completions_are_printed_for_each_shell_and_name_the_commands() {
    let bash = stdout_of(&["completions", "bash"]);
    assert!(bash.contains("complete -F _symdepot"), "{bash}");
    for command in ["serve", "upload", "prefetch", "completions"] {
        assert!(bash.contains(command), "{command} in the bash script");
    }
    assert!(stdout_of(&["completions", "zsh"]).starts_with("#compdef symdepot"));
    assert!(stdout_of(&["completions", "fish"]).contains("complete -c symdepot"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_symdepot"))
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bash"));
}

#[test]
fn man_pages_are_written_for_the_program_and_each_command() {
    let dir = tempfile::tempdir().unwrap();
    let pages = dir.path().join("man1");
    stdout_of(&["man", pages.to_str().unwrap()]);
    let main = std::fs::read_to_string(pages.join("symdepot.1")).unwrap();
    assert!(
        main.starts_with(".ie") || main.contains(".TH symdepot"),
        "{main}"
    );
    assert!(main.contains("debuginfod") && main.contains("SymStore"));
    for page in [
        "symdepot-serve.1",
        "symdepot-upload.1",
        "symdepot-token-create.1",
    ] {
        assert!(pages.join(page).exists(), "{page}");
    }
}

#[test]
fn help_names_every_protocol_and_upload_offers_no_store_options() {
    let top = stdout_of(&["--help"]);
    for protocol in [
        "Tecken",
        "Breakpad",
        "debuginfod",
        "SymStore",
        "SSQP",
        "/symbolicate/v5",
    ] {
        assert!(top.contains(protocol), "{protocol} in the top-level help");
    }
    let upload = stdout_of(&["upload", "--help"]);
    assert!(upload.contains("--url") && upload.contains("--auto"));
    assert!(
        !upload.contains("--data-dir") && !upload.contains("--config"),
        "{upload}"
    );
    let serve = stdout_of(&["serve", "--help"]);
    assert!(serve.contains("--data-dir") && serve.contains("--config"));
}

#[test]
fn the_daemon_tells_systemd_it_is_ready_once_it_listens_and_when_it_stops() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("notify");
    let manager = std::os::unix::net::UnixDatagram::bind(&socket).unwrap();
    // Only against a hang: the datagrams come at start and at SIGTERM.
    manager
        .set_read_timeout(Some(crate::support::PATIENCE))
        .unwrap();
    let mut serve = symdepot(&dir.path().join("data"));
    serve
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("NOTIFY_SOCKET", &socket);
    let (mut child, addr) = crate::support::spawn_logging(serve);
    let mut buf = [0u8; 256];
    let n = manager.recv(&mut buf).unwrap();
    assert_eq!(buf[..n].trim_ascii(), b"READY=1");
    let got = crate::support::http_get(format!("http://{addr}/__lbheartbeat__")).unwrap();
    assert_eq!(got.status(), 200, "ready means answering");
    sigterm(&child);
    let n = manager.recv(&mut buf).unwrap();
    assert_eq!(buf[..n].trim_ascii(), b"STOPPING=1");
    assert!(wait_exit(&mut child).success());
}
