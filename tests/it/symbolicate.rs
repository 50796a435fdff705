//! `/symbolicate/v5` and `/v4` (`spec/symbolication.md`), checked against
//! what `minidump-stackwalk --json` reports for the same modules and offsets.

use serde_json::{Value, json};

use crate::support::*;

#[path = "../../examples/sample-minidump/writer.rs"]
mod writer;
use writer::windows_minidump;

fn symbolicate(s: &TestServer, path: &str, body: &Value) -> (u16, Value) {
    let resp = s.client.post(s.url(path)).json(body).send().unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().unwrap())
}

/// The status and text of `body` posted raw to `path`.
fn post_raw(s: &TestServer, path: &str, body: impl Into<reqwest::blocking::Body>) -> (u16, String) {
    let resp = s.client.post(s.url(path)).body(body).send().unwrap();
    (resp.status().as_u16(), resp.text().unwrap())
}

/// A store holding the `.sym` of a live process's binary, and a minidump of it.
struct Crash {
    _crashed: crate::interop_minidump::Crashed,
    dump: std::path::PathBuf,
    server: TestServer,
}

fn crash() -> Crash {
    let c = crate::interop_minidump::crashed("victim");
    let server = TestServer::with_config(|c| c.public_stackwalk = true);
    server.upload_ok(zip_of(&[(&c.key, &c.sym)]));
    Crash {
        dump: c.dump.clone(),
        _crashed: c,
        server,
    }
}

/// `minidump-stackwalk --json` of `dump` with `s` as its symbol server.
fn stackwalk_json(s: &TestServer, dump: &std::path::Path) -> Value {
    let scratch = tempfile::tempdir().unwrap();
    let out = cargo_tool("minidump-stackwalk")
        .arg("--json")
        .arg("--symbols-url")
        .arg(s.url("/"))
        .arg("--symbols-cache")
        .arg(scratch.path().join("cache"))
        .arg("--symbols-tmp")
        .arg(scratch.path().join("tmp"))
        .arg(dump)
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The first frame of the crashing thread (else of the first thread) of a
/// `minidump-stackwalk --json` answer, and its module.
fn top_frame(walked: &Value) -> (Value, Value) {
    let frame = walked["crashing_thread"]["frames"][0].clone();
    let frame = if frame.is_null() {
        walked["threads"][0]["frames"][0].clone()
    } else {
        frame
    };
    let m = (walked["modules"].as_array().unwrap().iter())
        .find(|m| m["filename"] == frame["module"])
        .unwrap()
        .clone();
    (frame, m)
}

fn hex(v: &Value) -> u64 {
    u64::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

#[test]
fn v5_frames_agree_with_minidump_stackwalk() {
    let c = crash();
    let walked = stackwalk_json(&c.server, &c.dump);
    // Every frame of every thread that has a module, as [module index, offset].
    let modules: Vec<&Value> = walked["modules"].as_array().unwrap().iter().collect();
    let index_of = |name: &str| modules.iter().position(|m| m["filename"] == name);
    let mut frames: Vec<&Value> = Vec::new();
    for t in walked["threads"].as_array().unwrap() {
        frames.extend(
            (t["frames"].as_array().unwrap().iter())
                .filter(|f| f["module"].as_str().and_then(index_of).is_some()),
        );
    }
    assert!(
        frames.iter().any(|f| f["function"] == "spin_level2"),
        "{walked}"
    );
    let stack: Vec<Value> = frames
        .iter()
        .map(|f| {
            json!([
                index_of(f["module"].as_str().unwrap()).unwrap(),
                hex(&f["module_offset"])
            ])
        })
        .collect();
    let memory_map: Vec<Value> = (modules.iter())
        .map(|m| json!([m["debug_file"], m["debug_id"]]))
        .collect();
    let (status, answer) = symbolicate(
        &c.server,
        "/symbolicate/v5",
        &json!({"jobs": [{"memoryMap": memory_map, "stacks": [stack]}]}),
    );
    assert_eq!(status, 200, "{answer}");
    let got = answer["results"][0]["stacks"][0].as_array().unwrap();
    assert_eq!(got.len(), frames.len());
    let mut symbolicated = 0;
    for (ours, theirs) in got.iter().zip(&frames) {
        assert_eq!(hex(&ours["module_offset"]), hex(&theirs["module_offset"]));
        assert_eq!(
            ours.get("function"),
            theirs.get("function").filter(|f| !f.is_null()),
            "{ours} vs {theirs}"
        );
        if theirs["function"].is_string() {
            symbolicated += 1;
            assert_eq!(
                hex(&ours["function_offset"]),
                hex(&theirs["function_offset"]),
                "{ours} vs {theirs}"
            );
            assert_eq!(ours["file"], theirs["file"], "{ours} vs {theirs}");
            assert_eq!(ours["line"], theirs["line"], "{ours} vs {theirs}");
        }
    }
    assert!(symbolicated >= 3, "{answer}");
    // Modules with symbols, modules without (now in the missing-symbols report).
    let found = &answer["results"][0]["found_modules"];
    for m in &modules {
        let label = format!(
            "{}/{}",
            m["debug_file"].as_str().unwrap(),
            m["debug_id"].as_str().unwrap()
        );
        let used = stack
            .iter()
            .any(|f| modules[f[0].as_u64().unwrap() as usize] == *m);
        let expect = if !used {
            Value::Null
        } else {
            Value::Bool(m["loaded_symbols"] == true)
        };
        assert_eq!(found[&label], expect, "{label}: {found}");
    }
}

#[test]
fn v4_answers_the_old_shape_and_bad_requests_are_400s_naming_the_problem() {
    let c = crash();
    let walked = stackwalk_json(&c.server, &c.dump);
    let (frame, m) = top_frame(&walked);
    let (status, answer) = symbolicate(
        &c.server,
        "/symbolicate/v4",
        &json!({"memoryMap": [[m["debug_file"], m["debug_id"]], ["gone.pdb", ID_A]],
                "stacks": [[[0, hex(&frame["module_offset"])], [1, 16], [-1, 7]]], "version": 4}),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer,
        json!({
            "symbolicatedStacks": [[
                format!("{} (in {})", frame["function"].as_str().unwrap(), m["debug_file"].as_str().unwrap()),
                "0x10 (in gone.pdb)",
                "0x7"
            ]],
            "knownModules": [true, false]
        })
    );
    let s = &c.server;
    for (body, expect) in [
        ("{", "not JSON"),
        (
            r#"{"jobs": [{"memoryMap": [], "stacks": [[[0, 1]]]}]}"#,
            "jobs[0].stacks[0][0]: module index 0",
        ),
        (
            r#"{"memoryMap": [["a.pdb", "1"]], "stacks": [[[0, -1]]]}"#,
            "non-negative",
        ),
        (r#"{"memoryMap": "x", "stacks": []}"#, "memoryMap"),
    ] {
        let (status, text) = post_raw(s, "/symbolicate/v5", body);
        assert_eq!(status, 400, "{body}");
        assert!(text.contains(expect), "{body}: {text}");
    }
    assert_eq!(s.get("/symbolicate/v5").status(), 405);
}

#[test]
fn try_symbols_answer_only_where_try_is_asked_and_too_many_frames_are_refused() {
    let s = TestServer::with_config(|c| c.max_symbolicate_frames = 5);
    let data = sym("t.pdb", ID_A, "");
    assert_eq!(
        s.upload_with(
            &s.token,
            zip_of(&[(&format!("t.pdb/{ID_A}/t.sym"), &data)]),
            Some("1")
        )
        .status(),
        201
    );
    let job = json!({"memoryMap": [["t.pdb", ID_A]], "stacks": [[[0, 0x1004]]]});
    let function = |path: &str| {
        let (status, v) = symbolicate(&s, path, &json!({"jobs": [job.clone()]}));
        assert_eq!(status, 200, "{v}");
        v["results"][0]["stacks"][0][0]["function"].clone()
    };
    assert_eq!(function("/symbolicate/v5"), Value::Null);
    assert_eq!(function("/symbolicate/v5?try=1"), "main");
    assert_eq!(function("/try/symbolicate/v5"), "main");
    let many = json!({"memoryMap": [["t.pdb", ID_A]], "stacks": [vec![[0, 1]; 6]]});
    let (status, v) = symbolicate(&s, "/symbolicate/v5", &many);
    assert_eq!(status, 400);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("max_symbolicate_frames"),
        "{v}"
    );
}

#[test]
fn a_module_is_parsed_once_however_many_requests_wait_for_it() {
    use crate::records::{scrape, value};
    let s = TestServer::start();
    let mut extra = String::new();
    for i in 0..20_000 {
        extra.push_str(&format!("PUBLIC {:x} 0 f{i}\n", 0x10000 + i * 16));
    }
    let data = sym("big.pdb", ID_A, &extra);
    s.upload_ok(zip_of(&[(&format!("big.pdb/{ID_A}/big.sym"), &data)]));
    let job = json!({"memoryMap": [["big.pdb", ID_A]], "stacks": [[[0, 0x10000 + 16 * 777 + 3]]]});
    std::thread::scope(|scope| {
        for _ in 0..16 {
            scope.spawn(|| {
                let (status, v) = symbolicate(&s, "/symbolicate/v5", &job);
                assert_eq!(status, 200);
                assert_eq!(v["results"][0]["stacks"][0][0]["function"], "f777");
                assert_eq!(v["results"][0]["stacks"][0][0]["function_offset"], "0x3");
            });
        }
    });
    assert_eq!(
        value(&scrape(&s), "symdepot_symbol_files_parsed_total", &[]),
        1.0
    );
}

#[test]
fn a_parse_whose_client_went_away_is_kept_in_the_cache() {
    use crate::records::{scrape, value};
    let s = TestServer::start();
    let mut extra = String::new();
    for i in 0..300_000 {
        extra.push_str(&format!("PUBLIC {:x} 0 function_{i}\n", 0x10000 + i * 16));
    }
    let data = sym("slow.pdb", ID_A, &extra);
    s.upload_ok(zip_of(&[(&format!("slow.pdb/{ID_A}/slow.sym"), &data)]));
    let job = json!({"memoryMap": [["slow.pdb", ID_A]], "stacks": [[[0, 0x10000 + 16 * 777]]]});
    let parsed = || value(&scrape(&s), "symdepot_symbol_files_parsed_total", &[]);
    // A client that gives up while the file is parsed.
    let impatient = crate::support::client()
        .timeout(std::time::Duration::from_millis(50))
        .build()
        .unwrap();
    let gone = impatient.post(s.url("/symbolicate/v5")).json(&job).send();
    assert!(gone.is_err(), "the answer came before the client left");
    // The parse goes on, is counted and kept: the next request parses nothing.
    wait_until("the parse is kept", || parsed() == 1.0);
    let (status, v) = symbolicate(&s, "/symbolicate/v5", &job);
    assert_eq!(status, 200);
    assert_eq!(v["results"][0]["stacks"][0][0]["function"], "function_777");
    assert_eq!(parsed(), 1.0);
}

/// What two stack walks agree on, frame by frame: every thread's frames'
/// module, offset, function, file and line.
/// A frame's module, module offset, function, file and line.
type FrameFacts = (Value, Value, Value, Value, Value);

fn frames_of(walk: &Value) -> Vec<Vec<FrameFacts>> {
    walk["threads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (t["frames"].as_array().unwrap().iter())
                .map(|f| {
                    (
                        f["module"].clone(),
                        f["module_offset"].clone(),
                        f["function"].clone(),
                        f["file"].clone(),
                        f["line"].clone(),
                    )
                })
                .collect()
        })
        .collect()
}

#[test]
fn stackwalk_agrees_with_minidump_stackwalk_on_the_same_dump() {
    let c = crash();
    let s = &c.server;
    let dump = std::fs::read(&c.dump).unwrap();
    let theirs = stackwalk_json(s, &c.dump);
    // Raw body.
    let resp = s
        .client
        .post(s.url("/stackwalk"))
        .body(dump.clone())
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let ours: Value = resp.json().unwrap();
    assert_eq!(frames_of(&ours), frames_of(&theirs));
    let loaded = |w: &Value| -> Vec<(Value, Value)> {
        (w["modules"].as_array().unwrap().iter())
            .map(|m| (m["filename"].clone(), m["loaded_symbols"].clone()))
            .collect()
    };
    assert_eq!(loaded(&ours), loaded(&theirs));
    assert_eq!(ours["crashing_thread"], theirs["crashing_thread"]);
    assert!(
        frames_of(&ours)
            .iter()
            .flatten()
            .any(|f| f.2 == "spin_level2"),
        "{ours}"
    );
    // As crash reporters send it: multipart, field upload_file_minidump.
    let form = reqwest::blocking::multipart::Form::new()
        .text("ProductName", "victim")
        .part(
            "upload_file_minidump",
            reqwest::blocking::multipart::Part::bytes(dump.clone()).file_name("crash.dmp"),
        );
    let resp = s
        .client
        .post(s.url("/stackwalk"))
        .multipart(form)
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let multipart: Value = resp.json().unwrap();
    assert_eq!(frames_of(&multipart), frames_of(&theirs));
    // Modules without symbols are in the missing-symbols report.
    let without: Vec<&str> = (ours["modules"].as_array().unwrap().iter())
        .filter(|m| m["loaded_symbols"] == false && m["debug_id"].is_string())
        .map(|m| m["debug_file"].as_str().unwrap())
        .collect();
    assert!(!without.is_empty());
    s.wait_for_count(
        &format!(
            "SELECT COUNT(*) FROM missing WHERE debug_file = '{}'",
            without[0]
        ),
        1,
    );
}

#[test]
fn a_truncated_or_foreign_minidump_is_a_400_and_the_size_is_capped() {
    let c = crash();
    let s = &c.server;
    let dump = std::fs::read(&c.dump).unwrap();
    for body in [
        dump[..dump.len() / 3].to_vec(),
        b"MDMP\x93\xa7".to_vec(),
        b"hello".to_vec(),
    ] {
        let (status, text) = post_raw(s, "/stackwalk", body);
        assert_eq!(status, 400);
        assert!(text.contains("error"));
    }
    let small = TestServer::with_config(|c| {
        c.max_minidump_bytes = 1024;
        c.public_stackwalk = true;
    });
    assert_eq!(post_raw(&small, "/stackwalk", dump).0, 413);
    assert_eq!(s.get("/stackwalk").status(), 405);
}

#[test]
fn names_are_cut_inlines_bounded_and_an_answer_past_its_budget_is_a_413() {
    // One address under a function, a file and 70 inlined calls, each name 10 KiB.
    let long = |c: char| c.to_string().repeat(10 << 10);
    let mut text = format!(
        "MODULE Linux x86_64 {ID_A} long.pdb\nFILE 0 {}\n",
        long('f')
    );
    for d in 0..70 {
        text.push_str(&format!("INLINE_ORIGIN {d} {}{d}\n", long('i')));
    }
    text.push_str(&format!("FUNC 1000 100 0 {}\n", long('n')));
    for d in 0..70 {
        text.push_str(&format!("INLINE {d} 1 0 {d} 1000 100\n"));
    }
    text.push_str("1000 100 1 0\n");
    let s = TestServer::start();
    s.upload_ok(zip_of(&[(
        &format!("long.pdb/{ID_A}/long.sym"),
        text.as_bytes(),
    )]));
    let job = |frames: usize| json!({"jobs": [{"memoryMap": [["long.pdb", ID_A]], "stacks": [vec![[0, 0x1010]; frames]]}]});
    // A frame carries 64 inlines, every name cut to 4 KiB: about 520 KiB of names.
    let (status, answer) = symbolicate(&s, "/symbolicate/v5", &job(1));
    assert_eq!(status, 200, "{answer}");
    let frame = &answer["results"][0]["stacks"][0][0];
    let name = frame["function"].as_str().unwrap();
    assert!(
        name.len() <= 4100 && name.starts_with("nnnn"),
        "{}",
        name.len()
    );
    assert_eq!(frame["inlines"].as_array().unwrap().len(), 64);
    // 200 such frames would carry over 64 MiB of names.
    let (status, answer) = symbolicate(&s, "/symbolicate/v5", &job(200));
    assert_eq!(status, 413, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("fewer frames"),
        "{answer}"
    );
}

/// A Linux amd64 minidump of one thread whose stack (`stack_bytes`) is a
/// chain of frame pointers, each with a return address of its own: a walk
/// finds a frame every 16 bytes (65 536 for 1 MiB), each costing the walker
/// a few KiB.
fn deep_stack_minidump(stack_bytes: usize) -> Vec<u8> {
    const STACK: u64 = 0x7f00_0000_0000;
    const CONTEXT: usize = 1232;
    let u32s = |d: &mut Vec<u8>, ws: &[u32]| ws.iter().for_each(|w| d.extend(w.to_le_bytes()));
    // Header (32), a directory of 3 (36), then the streams.
    let (si_at, ctx_at) = (68u32, 128u32);
    let stack_at = ctx_at + CONTEXT as u32;
    let tl_at = stack_at + stack_bytes as u32;
    let ml_at = tl_at + 4 + 48;
    let mut d = b"MDMP".to_vec();
    u32s(&mut d, &[0xa793, 3, 32, 0, 0, 0, 0]);
    u32s(&mut d, &[7, 56, si_at, 3, 52, tl_at, 5, 20, ml_at]);
    // System info: amd64, Linux (0x8201), no service pack string.
    d.extend(9u16.to_le_bytes());
    d.extend([0u8; 6]);
    u32s(&mut d, &[0, 0, 0, 0x8201, 64]);
    d.resize(si_at as usize + 56, 0);
    d.resize(ctx_at as usize, 0);
    let mut ctx = vec![0u8; CONTEXT];
    ctx[48..52].copy_from_slice(&0x0010_001fu32.to_le_bytes());
    ctx[152..160].copy_from_slice(&STACK.to_le_bytes()); // rsp
    ctx[160..168].copy_from_slice(&STACK.to_le_bytes()); // rbp
    ctx[248..256].copy_from_slice(&0x100_0000u64.to_le_bytes()); // rip
    d.extend(ctx);
    for k in 0..stack_bytes as u64 / 16 {
        let next = if k + 1 < stack_bytes as u64 / 16 {
            STACK + (k + 1) * 16
        } else {
            0
        };
        d.extend(next.to_le_bytes());
        d.extend((0x40_0000 + k).to_le_bytes());
    }
    // The thread list: one thread, its stack and context.
    u32s(&mut d, &[1, 1, 0, 0, 0, 0, 0]);
    d.extend(STACK.to_le_bytes());
    u32s(
        &mut d,
        &[stack_bytes as u32, stack_at, CONTEXT as u32, ctx_at],
    );
    // The memory list: the stack.
    u32s(&mut d, &[1]);
    d.extend(STACK.to_le_bytes());
    u32s(&mut d, &[stack_bytes as u32, stack_at]);
    d
}

#[test]
fn a_module_named_past_what_can_be_asked_for_has_no_symbols_and_odd_names_ask_no_upstream() {
    let up = TestServer::start();
    let url = format!("breakpad+http://{}/", up.addr);
    let s = TestServer::with_config(|c| {
        c.public_stackwalk = true;
        c.upstreams = url;
    });
    let asked = || crate::mirror::symbol_requests(&up);
    let before = asked();
    let long = format!("{}.pdb", "L".repeat(40_000));
    for (code, pdb) in [
        ("x.dll", long.as_str()),
        ("y.dll", ".."),
        ("z.dll", "C:\\x\\"),
    ] {
        let (status, body) = post_raw(&s, "/stackwalk", windows_minidump(&[(code, pdb, ID_A)]));
        assert_eq!(status, 200, "{pdb:.40}: {body:.500}");
        let walked: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(walked["modules"][0]["loaded_symbols"], false, "{pdb:.40}");
    }
    // A proper name is asked for upstream; the odd ones were not.
    let (status, _) = post_raw(
        &s,
        "/stackwalk",
        windows_minidump(&[("w.dll", "w.pdb", ID_A)]),
    );
    assert_eq!(status, 200);
    assert_eq!(asked(), before + 1.0);
}

#[test]
fn a_minidump_needing_more_than_max_stackwalk_memory_is_a_400_and_walks_go_on() {
    let deep = deep_stack_minidump(1 << 20);
    let post = |s: &TestServer, body: Vec<u8>| post_raw(s, "/stackwalk", body);
    // Within the default limit the walk finds a frame every 16 bytes...
    let roomy = TestServer::with_config(|c| c.public_stackwalk = true);
    let (status, body) = post(&roomy, deep.clone());
    assert_eq!(status, 200, "{body}");
    let walked: Value = serde_json::from_str(&body).unwrap();
    let frames = walked["threads"][0]["frames"].as_array().unwrap().len();
    assert!(frames > 60_000, "{frames} frames");
    // A page shows the first frames (the walker cuts them), and says how many more.
    let resp = roomy
        .client
        .post(roomy.url("/stackwalk"))
        .header("Accept", "text/html")
        .body(deep.clone())
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let page = resp.text().unwrap();
    assert_eq!(page.matches("<tr><td>").count(), 256, "frames shown");
    assert!(
        page.contains(&format!("{} more frames", frames - 256)),
        "{page:.2000}"
    );
    // ...which needs far more than 96 MiB: refused, naming the setting.
    let c = crash();
    let tight = TestServer::with_config(|cfg| {
        cfg.public_stackwalk = true;
        cfg.max_stackwalk_memory = 96 << 20;
    });
    tight.upload_ok(zip_of(&[(&c._crashed.key, &c._crashed.sym)]));
    let (status, body) = post(&tight, deep);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("max_stackwalk_memory"), "{body}");
    // The daemon goes on walking what fits.
    let (status, body) = post(&tight, std::fs::read(&c.dump).unwrap());
    assert_eq!(status, 200, "{body}");
    let walked: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        frames_of(&walked),
        frames_of(&stackwalk_json(&tight, &c.dump))
    );
}

#[test]
fn the_symbolicate_page_takes_a_pasted_job_and_a_dropped_minidump() {
    let c = crash();
    let s = &c.server;
    // Linked from every page's header.
    let home = s.get("/").text().unwrap();
    assert!(home.contains("href=\"/symbolicate\""), "{home}");
    let form = s.get("/symbolicate").text().unwrap();
    assert!(form.contains("name=\"job\"") && form.contains("upload_file_minidump"));
    // A pasted job: its frames as a table.
    let walked = stackwalk_json(s, &c.dump);
    let (frame, m) = top_frame(&walked);
    let job = json!({"memoryMap": [[m["debug_file"], m["debug_id"]], ["gone.pdb", ID_A]],
                     "stacks": [[[0, hex(&frame["module_offset"])], [1, 5]]]})
    .to_string();
    let resp = s
        .client
        .post(s.url("/symbolicate"))
        .form(&[("job", job.as_str())])
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let page = resp.text().unwrap();
    assert!(page.contains(frame["function"].as_str().unwrap()), "{page}");
    assert!(
        page.contains("Modules without symbols (1)") && page.contains("gone.pdb"),
        "{page}"
    );
    // A bad job: the problem named, the form again, 400.
    let resp = s
        .client
        .post(s.url("/symbolicate"))
        .form(&[("job", "{\"memoryMap\": 3}")])
        .send()
        .unwrap();
    assert_eq!(resp.status(), 400);
    let page = resp.text().unwrap();
    assert!(
        page.contains("memoryMap: missing, or not an array") && page.contains("<textarea"),
        "{page}"
    );
    // A dropped minidump, as a browser sends the form: a readable page.
    let form = reqwest::blocking::multipart::Form::new().part(
        "upload_file_minidump",
        reqwest::blocking::multipart::Part::bytes(std::fs::read(&c.dump).unwrap())
            .file_name("crash.dmp"),
    );
    let resp = s
        .client
        .post(s.url("/stackwalk"))
        .header("Accept", "text/html,application/xhtml+xml")
        .multipart(form)
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page = resp.text().unwrap();
    assert!(
        page.contains("spin_level2") && page.contains("victim.c:"),
        "{page}"
    );
    assert!(page.contains("Modules without symbols ("), "{page}");
}

/// `dump_syms [--inlines] <file>` run by hand: the `.sym` text.
fn dump_syms_by_hand(file: &std::path::Path) -> String {
    let out = cargo_tool("dump_syms")
        .arg("--inlines")
        .arg(file)
        .output()
        .unwrap();
    succeeded(out, "dump_syms --inlines")
}

/// A `.sym` without its `INFO GENERATOR` line.
fn without_generator(sym: &str) -> String {
    sym.lines()
        .filter(|l| !l.starts_with("INFO GENERATOR"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_missing_sym_is_generated_from_the_stored_debug_file_of_its_id() {
    let c = crate::interop_minidump::crashed("gensym");
    let f = &c.binary;
    // The store holds only the split debug file (placed by its identity, under its own name).
    let s = TestServer::start();
    let debug = std::fs::read(&f.debug).unwrap();
    let resp = s
        .client
        .post(s.url("/upload/?layout=auto"))
        .header("Auth-Token", &s.token)
        .multipart(reqwest::blocking::multipart::Form::new().part(
            "gensym.debug",
            reqwest::blocking::multipart::Part::bytes(debug).file_name("gensym.debug"),
        ))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 201, "{}", resp.text().unwrap());
    assert_eq!(s.count("SELECT COUNT(*) FROM keys WHERE kind = 'sym'"), 0);
    // minidump-stackwalk asks for gensym/<id>/gensym.sym: made, stored, served.
    let scratch = tempfile::tempdir().unwrap();
    let out = crate::interop_minidump::stackwalk(&s, &c.dump, scratch.path());
    assert!(out.contains("gensym!spin_level2 [gensym.c : 5"), "{out}");
    assert_eq!(s.count("SELECT COUNT(*) FROM keys WHERE kind = 'sym'"), 1);
    // Under a name the debug file does not go by, the id makes nothing: a plain miss.
    let made_up = format!("/made-up/{}/made-up.sym", f.debug_id);
    assert_eq!(s.get(&made_up).status(), 404);
    assert_eq!(s.count("SELECT COUNT(*) FROM keys WHERE kind = 'sym'"), 1);
    // The same as dump_syms run by hand on the same file (named as the module).
    let by_hand = scratch.path().join("gensym");
    std::fs::copy(&f.debug, &by_hand).unwrap();
    let served = s.get(&format!("/{}", c.key)).text().unwrap();
    assert_eq!(
        without_generator(&served),
        without_generator(&dump_syms_by_hand(&by_hand))
    );
    assert!(served.contains("\nINFO GENERATOR symdepot "), "{served}");
    // Recorded as generated, from which file.
    let (user, from): (String, String) = {
        let rows = s.rows(
            "SELECT \"user\", filename FROM uploads WHERE status = 'complete' ORDER BY id DESC LIMIT 1",
            &[],
        );
        (rows[0].get(0).unwrap(), rows[0].get(1).unwrap())
    };
    assert_eq!(user, "sym generator");
    assert!(from.ends_with("gensym.debug"), "{from}");
    // The symbolication API finds it too (no second generation).
    let (status, v) = symbolicate(
        &s,
        "/symbolicate/v5",
        &json!({"memoryMap": [["gensym", f.debug_id]], "stacks": [[[0, 0]]]}),
    );
    assert_eq!(status, 200);
    assert_eq!(
        v["results"][0]["found_modules"][format!("gensym/{}", f.debug_id)],
        true
    );
    assert_eq!(
        s.count("SELECT COUNT(*) FROM uploads WHERE \"user\" = 'sym generator'"),
        1
    );
}

#[test]
fn a_sym_is_generated_from_a_pdb_and_a_failure_is_recorded_once() {
    let pe = crate::windows::build_pe();
    let s = TestServer::start();
    s.upload_ok(zip_of(&[(
        &format!("x.pdb/{}/x.pdb", pe.debug_id),
        &std::fs::read(&pe.pdb).unwrap(),
    )]));
    let key = format!("x.pdb/{}/x.sym", pe.debug_id);
    let served = s.get(&format!("/{key}"));
    assert_eq!(served.status(), 200);
    let served = served.text().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let by_hand = scratch.path().join("x.pdb");
    std::fs::copy(&pe.pdb, &by_hand).unwrap();
    assert_eq!(
        without_generator(&served),
        without_generator(&dump_syms_by_hand(&by_hand))
    );
    // A debug file over the size cap: refused once, recorded, not retried.
    let broken = TestServer::with_config(|c| c.max_sym_generation_bytes = 1024);
    let pdb = std::fs::read(&pe.pdb).unwrap();
    broken.upload_ok(zip_of(&[(&format!("x.pdb/{}/x.pdb", pe.debug_id), &pdb)]));
    for _ in 0..3 {
        assert_eq!(broken.get(&format!("/{key}")).status(), 404);
    }
    let error: String = broken.one(
        "SELECT error FROM uploads WHERE \"user\" = 'sym generator' AND status = 'failed'",
        &[],
    );
    assert!(error.contains(&key), "{error}");
    // The debug file's page says so.
    let id: i64 = broken.one("SELECT id FROM keys WHERE kind = 'pdb'", &[]);
    let page = broken.get(&format!("/files/{id}")).text().unwrap();
    assert!(
        page.contains("Breakpad symbols") && page.contains("failed: "),
        "{page}"
    );
    assert_eq!(
        broken.count("SELECT COUNT(*) FROM uploads WHERE \"user\" = 'sym generator'"),
        1
    );
}

#[test]
fn gen_sym_makes_the_sym_of_every_stored_debug_file_ahead_of_time() {
    let pe = crate::windows::build_pe();
    let s = TestServer::start();
    s.upload_ok(zip_of(&[(
        &format!("x.pdb/{}/x.pdb", pe.debug_id),
        &std::fs::read(&pe.pdb).unwrap(),
    )]));
    let run = |args: &[&str]| {
        symdepot(&s.data_dir())
            .arg("gen-sym")
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["--all"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("1 generated, 0 already there"), "{text}");
    let key = format!("x.pdb/{}/x.sym", pe.debug_id);
    wait_until("the generated .sym is served", || {
        s.get(&format!("/{key}")).status() == 200
    });
    // Again: there already; a key without a debug file; a key that is none.
    let out = run(&[&key, &format!("y.pdb/{ID_B}/y.sym"), "../etc/passwd"]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "0 generated, 1 already there, 1 without a debug file in the store, 1 failed"
        ),
        "{text}"
    );
}

#[test]
fn stackwalk_needs_a_download_token_unless_public_stackwalk_is_on() {
    let c = crate::interop_minidump::crashed("walked");
    let s = TestServer::start();
    s.upload_ok(zip_of(&[(&c.key, &c.sym)]));
    let dump = std::fs::read(&c.dump).unwrap();
    let post = |token: Option<&str>| {
        let mut req = s.client.post(s.url("/stackwalk")).body(dump.clone());
        if let Some(t) = token {
            req = req.header("Auth-Token", t);
        }
        req.send().unwrap().status()
    };
    assert_eq!(post(None), 401);
    let reader = s.create_token(&["download"], "crash triage");
    assert_eq!(post(Some(&reader)), 200);
}

/// The `.sym` the README's Quick start writes, read from its `printf` line.
fn quick_start_sym() -> Vec<u8> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("printf '%s\\n' 'MODULE")
        .expect("the Quick start's printf");
    let command = &readme[start..readme[start..].find("> demo/").unwrap() + start];
    let mut out = String::new();
    for (i, part) in command.split('\'').enumerate() {
        // Odd parts are the quoted arguments; the first is the format.
        if i % 2 == 1 && i > 1 {
            out.push_str(part);
            out.push('\n');
        }
    }
    out.into_bytes()
}

#[test]
fn the_quick_start_s_crash_walks_to_the_functions_it_uploaded() {
    let s = TestServer::start();
    let key = "xul.pdb/44E4EC8C2F41492B9369D6B9A059577C2/xul.sym";
    s.upload_ok(zip_of(&[(key, &quick_start_sym())]));
    let scratch = tempfile::tempdir().unwrap();
    let dump = scratch.path().join("crash.dmp");
    // What `cargo run --example sample-minidump` writes.
    let written = windows_minidump(&[("xul.dll", "xul.pdb", "44E4EC8C2F41492B9369D6B9A059577C2")]);
    std::fs::write(&dump, written).unwrap();
    let walked = crate::interop_minidump::stackwalk(&s, &dump, scratch.path());
    let frames: Vec<&str> = walked.lines().filter(|l| l.contains("xul.dll!")).collect();
    assert_eq!(frames.len(), 2, "{walked}");
    assert!(frames[0].contains("0  xul.dll!CrashReporter::Crash() [nsAppRunner.cpp : 41"));
    assert!(frames[1].contains("1  xul.dll!XRE_main [nsAppRunner.cpp : 87"));
}
