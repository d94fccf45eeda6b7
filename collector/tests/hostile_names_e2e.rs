//! A recording is untrusted input: its names (functions, files, threads, markers, census
//! labels and types, the command line) come from the recorded program or from whoever
//! crafted the file. Two recordings full of hostile names, written with the format's own
//! writer, go through every output format of summary, diff, census, spans and check: the
//! terminal text carries no control character but line feeds (escape sequences are shown as
//! `\x1b`), the JSON parses and keeps the names exactly, and the markdown, parsed as GitHub
//! does (tables), keeps every table row at its columns and holds no link, image or HTML.

mod common;

use common::{memlens, TempDir};
use memlens_format::{
    census_trigger, AllocatorKind, Census, Meta, ProcessEnd, RecordingWriter, SpanSide, StackId,
    ThreadId, ThreadInfo, TypeCensus, TypeSite,
};
use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

/// Names that would drive a terminal, or break or inject into markdown.
const HOSTILE: &[&str] = &[
    "\x1b[31mred\x1b[0m",
    "\x1b]0;pwned\x07title",
    "\x1b[2J\x1b[Hclear",
    "cr\rover",
    "nl\nFAILED: forged line",
    "tab\there",
    "`tick`|pipe|",
    "a\\|b",
    "<img src=x onerror=alert(1)>",
    "![x](http://evil.example/x.png)",
    "[click](http://evil.example)",
    "**bold** _em_ ~~gone~~ <b>",
    "\u{202e}txt.exe",
    "c1\u{9b}31m",
    "`",
    "|",
];

/// A recording: every hostile name as a function, a file, a thread, a span, a census type and
/// label; `scale` multiplies the allocations (so that base and head differ).
fn write(path: &std::path::Path, scale: u64) {
    let meta = Meta {
        python_version: "3.11\x1b[5m".into(),
        // Different in base and head, so that diff warns with both command lines.
        command_line: vec![
            "python".into(),
            "\x1b]0;x\x07app.py".into(),
            format!("|<b>|![x](http://evil.example/{scale}.png)\n| forged | row |"),
        ],
        ..Meta::default()
    };
    let mut w = RecordingWriter::new(Vec::new(), &meta).unwrap();
    for (i, name) in HOSTILE.iter().enumerate() {
        w.add_thread(ThreadInfo {
            id: ThreadId(i as u32),
            os_tid: i as u64 + 1,
            name: (*name).into(),
        });
    }
    let mut t = 1_000u64;
    let mut address = 0x10_000u64;
    let mut stacks = Vec::new();
    for (i, name) in HOSTILE.iter().enumerate() {
        let thread = ThreadId(i as u32);
        let file = format!("/project/{name}.py");
        let outer = w.intern_frame(name, &file, 1);
        let outer = w.intern_stack(StackId::ROOT, outer);
        let inner = w.intern_frame(&format!("{name}_inner"), &file, 2);
        let stack = w.intern_stack(outer, inner);
        stacks.push(stack);
        w.span_edge(t, thread, SpanSide::Begin, name);
        // Kept to the end (leaks), and a temporary one (the peak).
        let size = (i as u64 + 1) * 64 * 1024 * scale;
        w.alloc(t, thread, stack, address, size, AllocatorKind::Malloc).unwrap();
        address += size;
        t += 1_000;
        w.alloc(t, thread, stack, address, size, AllocatorKind::Malloc).unwrap();
        t += 1_000;
        w.span_edge(t, thread, SpanSide::End, name);
        t += 1_000;
    }
    let mut types = Vec::new();
    for (i, name) in HOSTILE.iter().enumerate() {
        types.push(TypeCensus {
            module: w.intern_string(name),
            qualname: w.intern_string(&format!("{name}.T")),
            count: 10 * (i as u64 + 1) * scale,
            bytes: 1000 * (i as u64 + 1) * scale,
            linked_count: 1,
            linked_bytes: 64,
            sites: vec![TypeSite { stack: stacks[i], count: 1, bytes: 64 }],
            dict: None,
        });
    }
    for (trigger, label) in [(census_trigger::START, ""), (census_trigger::MARK, HOSTILE[0])] {
        t += 1_000;
        w.marker(t, ThreadId(0), label);
        w.census(Census {
            time_ns: t,
            trigger,
            label: label.into(),
            duration_ns: 10,
            objects: 100,
            recursion_limit: 1000,
            types: types
                .iter()
                .map(|c| TypeCensus { count: c.count * (1 + trigger as u64), ..c.clone() })
                .collect(),
        });
    }
    let bytes = w.finish(ProcessEnd { time_ns: t + 1_000, exit_code: Some(0), signal: None });
    std::fs::write(path, bytes.unwrap()).unwrap();
}

/// Runs memlens; returns (exit code, stdout, stderr).
fn run(args: &[&str]) -> (i32, Vec<u8>, String) {
    let out = memlens().args(args).env_remove("NO_COLOR").output().unwrap();
    (out.status.code().unwrap_or(-1), out.stdout, String::from_utf8_lossy(&out.stderr).into())
}

/// The first character a terminal would act on, other than a line feed.
fn unsafe_char(text: &str) -> Option<char> {
    text.chars().find(|&c| {
        (c.is_control() && c != '\n')
            || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    })
}

fn assert_terminal_safe(what: &str, bytes: &[u8]) {
    let text = std::str::from_utf8(bytes).unwrap_or_else(|e| panic!("{what}: not UTF-8: {e}"));
    if let Some(c) = unsafe_char(text) {
        panic!("{what}: raw {c:?} reaches the terminal:\n{text}");
    }
}

/// Every string in a JSON document.
fn strings(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        serde_json::Value::Object(o) => o.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

/// The JSON parses, carries no raw control character, and keeps the names exactly.
fn assert_json_keeps_names(what: &str, bytes: &[u8], must_hold: &[&str]) {
    assert_terminal_safe(what, bytes);
    let v: serde_json::Value = serde_json::from_slice(bytes).unwrap();
    let mut all = Vec::new();
    strings(&v, &mut all);
    for name in must_hold {
        assert!(all.iter().any(|s| s.contains(name)), "{what}: {name:?} is not in the JSON");
    }
}

#[test]
fn hostile_names_stay_inert_in_every_output_format() {
    let dir = TempDir::new("hostile");
    let (base, head) = (dir.0.join("base.memlens"), dir.0.join("head.memlens"));
    write(&base, 1);
    write(&head, 3);
    let (base, head) = (base.to_str().unwrap(), head.to_str().unwrap());

    for args in [
        vec!["summary", head],
        vec!["diff", "--top", "40", base, head],
        vec!["census", head],
        vec!["census", head, "--growth", "0..1"],
        vec!["census", head, "--at", "1", "--by", "count"],
        vec!["spans", head],
        vec!["check", head],
    ] {
        let (code, out, err) = run(&args);
        assert_eq!(code, 0, "{args:?}: {err}");
        assert_terminal_safe(&format!("{args:?}"), &out);
        assert_terminal_safe(&format!("{args:?} (stderr)"), err.as_bytes());
        let text = String::from_utf8(out).unwrap();
        // Shown, as escapes, not dropped (`check` names nothing when all is well).
        if args[0] != "check" {
            assert!(text.contains("\\x1b[31mred\\x1b[0m"), "{args:?}:\n{text}");
        }
    }
    // A census label quoted in an error message is escaped too.
    let (code, _, err) = run(&["census", head, "--at", "nothing"]);
    assert_eq!(code, 2);
    assert!(unsafe_char(err.trim_end()).is_none() && err.contains("[31mred"), "{err}");

    let names = ["\x1b[31mred\x1b[0m", "`tick`|pipe|", "<img src=x onerror=alert(1)>"];
    for args in [
        vec!["summary", "--json", head],
        vec!["diff", "--format", "json", "--top", "40", base, head],
        vec!["census", "--json", head],
        vec!["census", "--json", head, "--growth", "0..1"],
        vec!["spans", "--json", head],
    ] {
        let (code, out, err) = run(&args);
        assert_eq!(code, 0, "{args:?}: {err}");
        assert_json_keeps_names(&format!("{args:?}"), &out, &names);
    }

    let (code, out, err) = run(&["diff", "--format", "markdown", "--top", "40", base, head]);
    assert_eq!(code, 0, "{err}");
    let md = String::from_utf8(out).unwrap();
    assert_terminal_safe("markdown", md.as_bytes());
    assert_markdown_inert(&md);
}

/// Parsed as GitHub does: each table row has its header's number of cells (no `|` of a name
/// split a cell, no line break ended a row), and no name became a link, an image, HTML,
/// emphasis or strikethrough. The names are there, as code.
fn assert_markdown_inert(md: &str) {
    let mut options = Options::empty();
    options.insert(Options::ENABLE_TABLES);
    options.insert(Options::ENABLE_STRIKETHROUGH);
    let (mut cells, mut code) = (0usize, Vec::new());
    let mut rows = Vec::new();
    for event in Parser::new_ext(md, options) {
        match event {
            Event::Start(Tag::TableRow | Tag::TableHead) => cells = 0,
            Event::Start(Tag::TableCell) => cells += 1,
            Event::End(TagEnd::TableRow | TagEnd::TableHead) => rows.push(cells),
            Event::Start(
                t @ (Tag::Link { .. }
                | Tag::Image { .. }
                | Tag::Emphasis
                | Tag::Strong
                | Tag::Strikethrough
                | Tag::HtmlBlock),
            ) if !matches!(t, Tag::Strong) => panic!("markup from a name: {t:?}\n{md}"),
            Event::Html(h) | Event::InlineHtml(h) => panic!("HTML from a name: {h}\n{md}"),
            Event::Code(c) => code.push(c.to_string()),
            _ => {}
        }
    }
    assert!(rows.len() > 2 * HOSTILE.len(), "{rows:?}\n{md}");
    assert!(rows.iter().all(|&n| n == 4), "a row with other than 4 cells: {rows:?}\n{md}");
    // The sites are the innermost frames, `NAME_inner`.
    for name in [
        "`tick`|pipe|_inner",
        "a\\|b_inner",
        "<img src=x onerror=alert(1)>_inner",
        "![x](http://evil.example/x.png)_inner",
        "nl\\nFAILED: forged line_inner",
        "\\x1b[31mred\\x1b[0m_inner",
    ] {
        assert!(code.iter().any(|c| c == name), "{name:?} is not a code span: {code:?}\n{md}");
    }
    // Our own markup is still there: the bold headings and the (escaped) warnings.
    assert!(md.contains("**Call sites at the peak**"), "{md}");
    assert!(md.contains("> **Warning:** the runs may not be comparable"), "{md}");
}
