//! Symbolication (`spec/symbolication.md`): module offsets in, function
//! names, files and lines out — Tecken's `/symbolicate/v5` (with Eliot's
//! `file`, `line` and `inlines`) and the older v4.
//!
//! Requests are parsed and checked here (every refusal names the problem;
//! nothing a client sends can make a 500), modules are looked up as the
//! `.sym` key a Breakpad client would ask for, and frames are filled from
//! `.sym` files parsed by rust-minidump's `breakpad-symbols` and kept in a
//! byte-bounded cache ([`cache::SymbolCache`]). No HTTP here: the handler
//! reads the body and writes the answer.

pub mod cache;
pub mod gensym;
pub mod minidump;
pub mod walker;

use std::collections::HashMap;
use std::sync::Arc;

use breakpad_symbols::{FrameSymbolizer, SimpleModule, SymbolFile};
use serde_json::{Value, json};

use crate::keys::{MemberKey, breakpad_sym_name};

/// One job: modules by index, and stacks of frames `(module index, offset)`;
/// an index of `-1` is "no module".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub modules: Vec<ModuleRef>,
    pub stacks: Vec<Vec<(i64, u64)>>,
}

/// A module of a job's memory map.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModuleRef {
    pub debug_file: String,
    pub debug_id: String,
}

impl ModuleRef {
    /// The `.sym` key a Breakpad client would ask for, if the module names one.
    pub fn sym_key(&self) -> Option<String> {
        let name = breakpad_sym_name(&self.debug_file);
        MemberKey::new(&self.debug_file, &self.debug_id, &name)
            .ok()
            .map(|k| k.key())
    }

    /// How `found_modules` names it.
    fn label(&self) -> String {
        format!("{}/{}", self.debug_file, self.debug_id)
    }
}

/// Distinct modules one request may use (each is looked up, maybe fetched
/// and parsed).
pub const MAX_MODULES: usize = 500;

/// Inlined functions reported per frame, outermost first.
pub const MAX_INLINES: usize = 64;

/// Longest function or file name in an answer; longer ones are cut (on a
/// character boundary) and end with `…`.
pub const MAX_NAME: usize = 4096;

/// Most memory one answer's filled frames may take (their names twice,
/// as found and as written, and [`FRAME_COST`] and [`INLINE_COST`] each);
/// a request whose answer would take more is refused.
pub const MAX_ANSWER_BYTES: usize = 64 << 20;

/// What a filled frame takes besides its names (its fields, as found and as
/// written).
pub const FRAME_COST: usize = 320;

/// What an inlined call takes besides its names.
pub const INLINE_COST: usize = 160;

/// Which request shape a body is read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V4,
    V5,
}

/// Parses a request body: v5 (`{"jobs": [...]}`, or one job alone) or v4
/// (one job). At most `max_frames` frames in all.
pub fn parse(body: &[u8], version: Version, max_frames: usize) -> Result<Vec<Job>, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let Value::Object(top) = &value else {
        return Err("the body must be a JSON object".to_string());
    };
    let jobs: Vec<(&Value, String)> = match (version, top.get("jobs")) {
        (Version::V5, Some(Value::Array(jobs))) => jobs
            .iter()
            .enumerate()
            .map(|(i, j)| (j, format!("jobs[{i}]")))
            .collect(),
        (Version::V5, Some(_)) => return Err("\"jobs\" must be an array".to_string()),
        (_, _) => vec![(&value, String::new())],
    };
    let mut frames = 0usize;
    let mut modules = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(jobs.len());
    for (job, at) in jobs {
        let job = parse_job(job, &at)?;
        for m in used_modules(&job) {
            modules.insert(job.modules[m].clone());
        }
        if modules.len() > MAX_MODULES {
            return Err(format!(
                "more than {MAX_MODULES} distinct modules used in one request"
            ));
        }
        frames += job.stacks.iter().map(Vec::len).sum::<usize>();
        if frames > max_frames {
            return Err(format!(
                "more than max_symbolicate_frames ({max_frames}) frames in one request"
            ));
        }
        out.push(job);
    }
    Ok(out)
}

/// `at.field`, or `field` at the top.
fn path(at: &str, field: &str) -> String {
    if at.is_empty() {
        field.to_string()
    } else {
        format!("{at}.{field}")
    }
}

fn parse_job(job: &Value, at: &str) -> Result<Job, String> {
    let Value::Object(job) = job else {
        return Err(format!(
            "{}: a job must be an object",
            at.trim_end_matches('.')
        ));
    };
    let map_at = path(at, "memoryMap");
    let Some(Value::Array(map)) = job.get("memoryMap") else {
        return Err(format!("{map_at}: missing, or not an array"));
    };
    let mut modules = Vec::with_capacity(map.len());
    for (i, m) in map.iter().enumerate() {
        let pair = m.as_array().filter(|p| p.len() == 2);
        let names = pair.and_then(|p| Some((p[0].as_str()?, p[1].as_str()?)));
        let Some((debug_file, debug_id)) = names else {
            return Err(format!(
                "{map_at}[{i}]: must be [\"debug file\", \"debug id\"]"
            ));
        };
        if debug_file.len() > 1024 || debug_id.len() > 1024 {
            return Err(format!("{map_at}[{i}]: longer than 1024 bytes"));
        }
        modules.push(ModuleRef {
            debug_file: debug_file.to_string(),
            debug_id: debug_id.to_string(),
        });
    }
    let stacks_at = path(at, "stacks");
    let Some(Value::Array(stacks)) = job.get("stacks") else {
        return Err(format!("{stacks_at}: missing, or not an array"));
    };
    let mut out = Vec::with_capacity(stacks.len());
    for (s, stack) in stacks.iter().enumerate() {
        let Value::Array(frames) = stack else {
            return Err(format!(
                "{stacks_at}[{s}]: a stack must be an array of frames"
            ));
        };
        let mut parsed = Vec::with_capacity(frames.len());
        for (f, frame) in frames.iter().enumerate() {
            let here = format!("{stacks_at}[{s}][{f}]");
            let pair = frame.as_array().filter(|p| p.len() == 2);
            let Some(pair) = pair else {
                return Err(format!(
                    "{here}: a frame must be [module index, module offset]"
                ));
            };
            let Some(index) = pair[0].as_i64() else {
                return Err(format!("{here}: the module index must be an integer"));
            };
            if index < -1 || index >= modules.len() as i64 {
                return Err(format!(
                    "{here}: module index {index} is not in the memoryMap (0..{}, or -1)",
                    modules.len()
                ));
            }
            let Some(offset) = pair[1].as_u64() else {
                return Err(format!(
                    "{here}: the module offset must be a non-negative integer"
                ));
            };
            parsed.push((index, offset));
        }
        out.push(parsed);
    }
    Ok(Job {
        modules,
        stacks: out,
    })
}

/// What one frame came to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frame {
    pub index: usize,
    pub offset: u64,
    /// The module's debug file (`None`: module index -1).
    pub module: Option<String>,
    pub function: Option<String>,
    pub function_offset: Option<u64>,
    pub file: Option<String>,
    pub line: Option<u32>,
    /// Functions inlined at the address, outermost first.
    pub inlines: Vec<Inline>,
}

/// A function inlined into a frame's function: its name and where in it
/// the address is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inline {
    pub function: String,
    pub file: Option<String>,
    pub line: Option<u32>,
}

/// Collects what `breakpad-symbols` fills in for one address.
struct Filling {
    address: u64,
    function: Option<(String, u64)>,
    source: Option<(String, u32)>,
    /// (name, file, line) of each inlined function, outermost first.
    calls: Vec<(String, Option<String>, Option<u32>)>,
}

impl FrameSymbolizer for Filling {
    fn get_instruction(&self) -> u64 {
        self.address
    }
    fn set_function(&mut self, name: &str, base: u64, _parameter_size: u32) {
        self.function = Some((name.to_string(), base));
    }
    fn set_source_file(&mut self, file: &str, line: u32, _base: u64) {
        self.source = Some((file.to_string(), line));
    }
    fn add_inline_frame(&mut self, name: &str, file: Option<&str>, line: Option<u32>) {
        self.calls
            .push((name.to_string(), file.map(str::to_string), line));
    }
}

/// Fills one frame at `offset` of a module from its symbols.
pub fn fill(symbols: &SymbolFile, frame: &mut Frame) {
    let module = SimpleModule::default();
    let mut f = Filling {
        address: frame.offset,
        function: None,
        source: None,
        calls: Vec::new(),
    };
    symbols.fill_symbol(&module, &mut f);
    let Some((name, base)) = f.function else {
        return;
    };
    frame.function = Some(name);
    frame.function_offset = frame.offset.checked_sub(base);
    // The parser reports the frame's own function at the location of its
    // first inlined call, then each inlined function (outermost first) at
    // the location inside it: the shape the answer has.
    if let Some((file, line)) = f.source {
        frame.file = Some(file);
        frame.line = Some(line);
    }
    frame.function = frame.function.take().map(cut);
    frame.file = frame.file.take().map(cut);
    frame.inlines = (f.calls.into_iter())
        .take(MAX_INLINES)
        .map(|(function, file, line)| Inline {
            function: cut(function),
            file: file.map(cut),
            line,
        })
        .collect();
}

/// A name cut to [`MAX_NAME`] bytes.
fn cut(mut s: String) -> String {
    if s.len() > MAX_NAME {
        let mut at = MAX_NAME;
        while !s.is_char_boundary(at) {
            at -= 1;
        }
        s.truncate(at);
        s.push('…');
    }
    s
}

/// What a job came to: its stacks, and which modules had symbols
/// (`None`: no frame asked for it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobResult {
    pub stacks: Vec<Vec<Frame>>,
    pub found: Vec<Option<bool>>,
}

/// Symbolicates a job with the symbols `symbols` gives for a module (the
/// caller's lookup, one per module of the memory map that a frame uses).
/// `budget` is what is left of [`MAX_ANSWER_BYTES`] for the request: an
/// error once the names of the answer would pass it.
pub fn symbolicate(
    job: &Job,
    symbols: &HashMap<usize, Option<Arc<SymbolFile>>>,
    budget: &mut usize,
) -> Result<JobResult, String> {
    let mut result = JobResult::unfilled(job);
    for m in used_modules(job) {
        let sym = symbols.get(&m).cloned().flatten();
        result.fill_module(job, m, sym.as_deref(), budget)?;
    }
    Ok(result)
}

impl JobResult {
    /// A job's frames with their modules named and nothing filled yet.
    pub fn unfilled(job: &Job) -> JobResult {
        let stacks = (job.stacks.iter())
            .map(|stack| {
                (stack.iter().enumerate())
                    .map(|(i, &(index, offset))| Frame {
                        index: i,
                        offset,
                        module: usize::try_from(index)
                            .ok()
                            .map(|m| job.modules[m].debug_file.clone()),
                        ..Frame::default()
                    })
                    .collect()
            })
            .collect();
        JobResult {
            stacks,
            found: vec![None; job.modules.len()],
        }
    }

    /// Fills the frames of module `m` of `job` from its symbols (`None`:
    /// it has none), charging their names to `budget` (see [`symbolicate`]).
    /// A module is filled, and its symbols needed, one at a time.
    pub fn fill_module(
        &mut self,
        job: &Job,
        m: usize,
        sym: Option<&SymbolFile>,
        budget: &mut usize,
    ) -> Result<(), String> {
        for (stack, frames) in job.stacks.iter().zip(&mut self.stacks) {
            for (&(index, _), frame) in stack.iter().zip(frames) {
                if usize::try_from(index) != Ok(m) {
                    continue;
                }
                self.found[m] = Some(sym.is_some());
                let Some(sym) = sym else { continue };
                fill(sym, frame);
                let names = frame.function.as_ref().map_or(0, String::len)
                    + frame.file.as_ref().map_or(0, String::len)
                    + (frame.inlines.iter())
                        .map(|i| i.function.len() + i.file.as_ref().map_or(0, String::len))
                        .sum::<usize>();
                let cost = 2 * names + FRAME_COST + INLINE_COST * frame.inlines.len();
                *budget = budget.checked_sub(cost).ok_or_else(|| {
                    format!(
                        "the answer would take more than {} MiB; ask for fewer frames",
                        MAX_ANSWER_BYTES >> 20
                    )
                })?;
            }
        }
        Ok(())
    }
}

/// The modules of a job that its frames use, by index.
pub fn used_modules(job: &Job) -> Vec<usize> {
    let mut used: Vec<usize> = (job.stacks.iter().flatten())
        .filter_map(|&(i, _)| usize::try_from(i).ok())
        .collect();
    used.sort_unstable();
    used.dedup();
    used
}

fn hex(n: u64) -> String {
    format!("{n:#x}")
}

/// The v5 answer of the jobs, in order.
pub fn v5_json(jobs: &[Job], results: &[JobResult]) -> String {
    let results: Vec<V5Result<'_>> = jobs
        .iter()
        .zip(results)
        .map(|(job, r)| {
            // A module listed twice is found if either entry found it.
            let mut found = serde_json::Map::new();
            for (m, f) in job.modules.iter().zip(&r.found) {
                let slot = found.entry(m.label()).or_insert(Value::Null);
                if let Some(f) = f
                    && *slot != Value::Bool(true)
                {
                    *slot = Value::Bool(*f);
                }
            }
            V5Result {
                stacks: Stacks(&r.stacks),
                found_modules: found,
            }
        })
        .collect();
    // Written as the frames are walked, never built as a JSON tree first
    // (which takes several times the answer's bytes).
    serde_json::to_string(&V5Answer { results }).unwrap_or_default()
}

#[derive(serde::Serialize)]
struct V5Answer<'a> {
    results: Vec<V5Result<'a>>,
}

#[derive(serde::Serialize)]
struct V5Result<'a> {
    stacks: Stacks<'a>,
    found_modules: serde_json::Map<String, Value>,
}

/// A job's stacks, written frame by frame.
struct Stacks<'a>(&'a [Vec<Frame>]);

impl serde::Serialize for Stacks<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|stack| FramesOut(stack)))
    }
}

struct FramesOut<'a>(&'a [Frame]);

impl serde::Serialize for FramesOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(FrameOut::of))
    }
}

/// One frame as the v5 answer has it: function, offset, file and line only
/// where a function was found.
#[derive(serde::Serialize)]
struct FrameOut<'a> {
    frame: usize,
    module_offset: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    module: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    function: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    function_offset: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<u32>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    inlines: &'a [Inline],
}

impl<'a> FrameOut<'a> {
    fn of(f: &'a Frame) -> FrameOut<'a> {
        let found = f.function.is_some();
        FrameOut {
            frame: f.index,
            module_offset: hex(f.offset),
            module: f.module.as_deref(),
            function: f.function.as_deref(),
            function_offset: f.function_offset.filter(|_| found).map(hex),
            file: f.file.as_deref().filter(|_| found),
            line: f.line.filter(|_| found),
            inlines: if found { &f.inlines } else { &[] },
        }
    }
}

impl serde::Serialize for Inline {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("function", &self.function)?;
        m.serialize_entry("file", &self.file)?;
        m.serialize_entry("line", &self.line)?;
        m.end()
    }
}

/// The v4 answer of one job: `"function (in module)"` per frame, the
/// address where there is no function.
pub fn v4_json(r: &JobResult) -> String {
    let stacks: Vec<Value> = (r.stacks.iter())
        .map(|s| {
            s.iter()
                .map(|f| match (&f.function, &f.module) {
                    (Some(name), Some(m)) => json!(format!("{name} (in {m})")),
                    (None, Some(m)) => json!(format!("{} (in {m})", hex(f.offset))),
                    (_, None) => json!(hex(f.offset)),
                })
                .collect()
        })
        .collect();
    let known: Vec<Value> = r
        .found
        .iter()
        .map(|f| f.map_or(Value::Null, Value::Bool))
        .collect();
    json!({ "symbolicatedStacks": stacks, "knownModules": known }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "44E4EC8C2F41492B9369D6B9A059577C2";

    fn sym() -> SymbolFile {
        let text = format!(
            "MODULE windows x86_64 {ID} xul.pdb\n\
             FILE 0 a.cpp\nFILE 1 b.h\nFILE 2 c.h\n\
             INLINE_ORIGIN 0 inner_fn\nINLINE_ORIGIN 1 middle_fn\n\
             FUNC 1000 100 0 outer_fn\n\
             INLINE 0 20 0 1 1010 10\n\
             INLINE 1 30 1 0 1010 10\n\
             1000 10 5 0\n1010 10 40 2\n1020 e0 7 0\n\
             PUBLIC 3000 0 public_fn\n"
        );
        SymbolFile::from_bytes(text.as_bytes()).unwrap()
    }

    fn frame(offset: u64) -> Frame {
        let mut f = Frame {
            offset,
            ..Frame::default()
        };
        fill(&sym(), &mut f);
        f
    }

    #[test]
    fn frames_get_function_offset_file_line_and_inlines() {
        let plain = frame(0x1004);
        assert_eq!(plain.function.as_deref(), Some("outer_fn"));
        assert_eq!(plain.function_offset, Some(4));
        assert_eq!(
            (plain.file.as_deref(), plain.line),
            (Some("a.cpp"), Some(5))
        );
        assert!(plain.inlines.is_empty());
        // Two calls inlined at 0x1014: outer_fn calls middle_fn (a.cpp:20),
        // which calls inner_fn (b.h:30); the address is at c.h:40.
        let inlined = frame(0x1014);
        assert_eq!(inlined.function.as_deref(), Some("outer_fn"));
        assert_eq!(
            (inlined.file.as_deref(), inlined.line),
            (Some("a.cpp"), Some(20))
        );
        assert_eq!(
            inlined.inlines,
            [
                Inline {
                    function: "middle_fn".into(),
                    file: Some("b.h".into()),
                    line: Some(30)
                },
                Inline {
                    function: "inner_fn".into(),
                    file: Some("c.h".into()),
                    line: Some(40)
                }
            ]
        );
        let public = frame(0x3010);
        assert_eq!(public.function.as_deref(), Some("public_fn"));
        assert_eq!(public.function_offset, Some(0x10));
        assert_eq!(frame(0x10).function, None);
    }

    #[test]
    fn bad_requests_are_refused_naming_the_problem() {
        let refused = |body: &str| parse(body.as_bytes(), Version::V5, 10).unwrap_err();
        assert!(refused("not json").contains("not JSON"));
        assert!(refused("[]").contains("object"));
        assert!(refused(r#"{"jobs": 3}"#).contains("\"jobs\""));
        assert!(refused(r#"{"jobs": [{"stacks": []}]}"#).contains("jobs[0].memoryMap"));
        assert!(refused(r#"{"memoryMap": [["a.pdb"]], "stacks": []}"#).contains("memoryMap[0]"));
        assert!(
            refused(r#"{"memoryMap": [["a.pdb", "1"]], "stacks": [[[1, 5]]]}"#)
                .contains("stacks[0][0]: module index 1")
        );
        assert!(
            refused(r#"{"memoryMap": [["a.pdb", "1"]], "stacks": [[[0, -5]]]}"#)
                .contains("non-negative")
        );
        assert!(
            refused(r#"{"memoryMap": [["a.pdb", "1"]], "stacks": [[[0, 1.5]]]}"#)
                .contains("non-negative integer")
        );
        let many = format!(
            r#"{{"memoryMap": [["a.pdb", "1"]], "stacks": [[{}]]}}"#,
            ["[0, 1]"; 11].join(",")
        );
        assert!(refused(&many).contains("max_symbolicate_frames"));
    }

    #[test]
    fn answers_have_tecken_s_shapes() {
        let body = format!(
            r#"{{"jobs": [{{"memoryMap": [["xul.pdb", "{ID}"], ["gone.pdb", "{ID}"], ["idle.pdb", "{ID}"]],
                "stacks": [[[0, 4100], [1, 5], [-1, 7]]]}}]}}"#
        );
        let jobs = parse(body.as_bytes(), Version::V5, 100).unwrap();
        assert_eq!(used_modules(&jobs[0]), [0, 1]);
        let symbols = HashMap::from([(0, Some(Arc::new(sym()))), (1, None)]);
        let mut budget = MAX_ANSWER_BYTES;
        let r = symbolicate(&jobs[0], &symbols, &mut budget).unwrap();
        let v5: Value = serde_json::from_str(&v5_json(&jobs, std::slice::from_ref(&r))).unwrap();
        assert_eq!(
            v5,
            json!({"results": [{
                "stacks": [[
                    {"frame": 0, "module_offset": "0x1004", "module": "xul.pdb", "function": "outer_fn",
                     "function_offset": "0x4", "file": "a.cpp", "line": 5},
                    {"frame": 1, "module_offset": "0x5", "module": "gone.pdb"},
                    {"frame": 2, "module_offset": "0x7"}
                ]],
                "found_modules": {
                    format!("xul.pdb/{ID}"): true, format!("gone.pdb/{ID}"): false,
                    format!("idle.pdb/{ID}"): null
                }
            }]})
        );
        assert_eq!(
            serde_json::from_str::<Value>(&v4_json(&r)).unwrap(),
            json!({"symbolicatedStacks": [["outer_fn (in xul.pdb)", "0x5 (in gone.pdb)", "0x7"]],
                   "knownModules": [true, false, null]})
        );
        // Listed twice: found if either entry found it; an answer over its budget is refused.
        let twice = format!(
            r#"{{"memoryMap": [["xul.pdb", "{ID}"], ["xul.pdb", "{ID}"]], "stacks": [[[0, 4100]]]}}"#
        );
        let jobs2 = parse(twice.as_bytes(), Version::V5, 100).unwrap();
        let symbols2 = HashMap::from([(0, Some(Arc::new(sym())))]);
        let r2 = symbolicate(&jobs2[0], &symbols2, &mut budget).unwrap();
        let v: Value = serde_json::from_str(&v5_json(&jobs2, std::slice::from_ref(&r2))).unwrap();
        assert_eq!(
            v["results"][0]["found_modules"][format!("xul.pdb/{ID}")],
            true
        );
        assert!(symbolicate(&jobs2[0], &symbols2, &mut 3).is_err());
        assert_eq!(cut("é".repeat(3000)).len(), MAX_NAME + '…'.len_utf8());
        assert_eq!(
            jobs[0].modules[0].sym_key().as_deref(),
            Some(format!("xul.pdb/{ID}/xul.sym").as_str())
        );
    }
}
