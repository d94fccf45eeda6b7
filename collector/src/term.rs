//! The terminal: the one place where text memlens prints for a person goes out.
//!
//! Names in a recording (functions, files, threads, markers, types, the command line) come
//! from the recorded program, or from whoever crafted the file: they are untrusted. Every
//! text command writes through [`Out`], which shows control characters as visible escapes
//! (`\x1b`, `\u{202e}`), so a name cannot move the cursor, change colours, set the window title
//! or reorder what follows it; only memlens's own line breaks and colours reach the terminal.
//! Messages on stderr go through [`escape`] (see `main`).
//!
//! Colour: on when stdout is a terminal, `NO_COLOR` is unset or empty (<https://no-color.org>)
//! and `TERM` is not `dumb`; off on pipes and files. JSON and markdown are written raw (serde
//! escapes control characters in JSON strings; markdown has its own escaping in
//! [`crate::markdown`]).

use std::borrow::Cow;
use std::io::{IsTerminal, Write};

/// Whether `c` must not reach a terminal as it is: C0 controls but the line feed, DEL, C1
/// controls (some terminals act on U+009B as on ESC [), and the invisible format characters
/// that reorder or hide text (bidirectional overrides and isolates, zero-width characters).
fn is_unsafe(c: char) -> bool {
    (c.is_control() && c != '\n')
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
            | '\u{feff}')
}

/// `text` with every character a terminal would act on shown as an escape: `\t`, `\r`,
/// `\x1b`, `\u{202e}`. Line feeds are kept (callers that print one name per line escape them
/// with [`escape_line`]).
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        push_escaped(&mut out, c);
    }
    Cow::Owned(out)
}

/// [`escape`], and line feeds too: for a value that must stay on one line.
pub fn escape_line(text: &str) -> Cow<'_, str> {
    if !text.contains('\n') {
        return escape(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c == '\n' {
            out.push_str("\\n");
        } else {
            push_escaped(&mut out, c);
        }
    }
    Cow::Owned(out)
}

fn push_escaped(out: &mut String, c: char) {
    use std::fmt::Write as _;
    match c {
        '\t' => out.push_str("\\t"),
        '\r' => out.push_str("\\r"),
        c if is_unsafe(c) && (c as u32) < 0x100 => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c if is_unsafe(c) => {
            let _ = write!(out, "\\u{{{:04x}}}", c as u32);
        }
        c => out.push(c),
    }
}

/// Whether text for a terminal on `stream` should be coloured.
fn colour_wanted(is_terminal: bool) -> bool {
    is_terminal
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && std::env::var_os("TERM").is_none_or(|t| t != "dumb")
}

/// Whether stderr is a terminal (progress lines go there only then).
pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}

/// Whether stderr may get escape sequences (to erase a progress line): a terminal, and
/// neither `NO_COLOR` nor `TERM=dumb`.
pub fn stderr_takes_escapes() -> bool {
    colour_wanted(std::io::stderr().is_terminal())
}

/// A style for [`Out::paint`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Section headings.
    Heading,
    /// Growth, failures, problems.
    Bad,
    /// Shrinking, passing.
    Good,
    /// Warnings.
    Warn,
    /// Less important detail.
    Dim,
}

impl Style {
    fn sgr(self) -> &'static str {
        match self {
            Style::Heading => "\x1b[1m",
            Style::Bad => "\x1b[31m",
            Style::Good => "\x1b[32m",
            Style::Warn => "\x1b[33m",
            Style::Dim => "\x1b[2m",
        }
    }
}

/// Text output for a person: every byte written is escaped ([`escape`]); colour, when on,
/// only through [`Out::paint`].
pub struct Out<W: Write> {
    inner: W,
    colour: bool,
}

/// Standard output, coloured when it is a terminal (see the module's doc).
pub fn stdout() -> Out<std::io::StdoutLock<'static>> {
    let stdout = std::io::stdout();
    let colour = colour_wanted(stdout.is_terminal());
    Out { inner: stdout.lock(), colour }
}

impl<W: Write> Out<W> {
    /// Text to `inner`, never coloured (tests, files).
    #[cfg(test)]
    pub fn plain(inner: W) -> Out<W> {
        Out { inner, colour: false }
    }

    /// Writes `text` (escaped) in `style` when colour is on, as plain text otherwise.
    pub fn paint(&mut self, style: Style, text: &str) -> std::io::Result<()> {
        if self.colour {
            self.inner.write_all(style.sgr().as_bytes())?;
            self.inner.write_all(escape(text).as_bytes())?;
            self.inner.write_all(b"\x1b[0m")
        } else {
            self.inner.write_all(escape(text).as_bytes())
        }
    }

    /// [`Out::paint`] and a line feed.
    pub fn paint_line(&mut self, style: Style, text: &str) -> std::io::Result<()> {
        self.paint(style, text)?;
        self.inner.write_all(b"\n")
    }

    /// The style of a change: growth is bad, shrinking good.
    pub fn paint_change(&mut self, delta: i64, text: &str) -> std::io::Result<()> {
        match delta {
            d if d > 0 => self.paint(Style::Bad, text),
            d if d < 0 => self.paint(Style::Good, text),
            _ => self.paint(Style::Dim, text),
        }
    }
}

impl<W: Write> Write for Out<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // `write!` hands over whole `str` pieces, so `buf` is normally valid UTF-8; bytes that
        // are not are shown as escapes too.
        match std::str::from_utf8(buf) {
            Ok(text) => self.inner.write_all(escape(text).as_bytes())?,
            Err(_) => {
                let lossy: String = buf
                    .iter()
                    .map(|&b| {
                        if b.is_ascii() && !is_unsafe(b as char) {
                            (b as char).to_string()
                        } else {
                            format!("\\x{b:02x}")
                        }
                    })
                    .collect();
                self.inner.write_all(lossy.as_bytes())?;
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_become_visible() {
        assert_eq!(escape("plain name"), "plain name");
        assert_eq!(escape("a\x1b[2Jb"), "a\\x1b[2Jb");
        assert_eq!(escape("tab\there\r"), "tab\\there\\r");
        assert_eq!(escape("bell\x07 del\x7f c1\u{9b}"), "bell\\x07 del\\x7f c1\\x9b");
        assert_eq!(escape("evil\u{202e}txt.py"), "evil\\u{202e}txt.py");
        assert_eq!(escape("two\nlines"), "two\nlines");
        assert_eq!(escape_line("two\nlines"), "two\\nlines");
        assert_eq!(escape("ünïcode ok"), "ünïcode ok");
    }

    #[test]
    fn out_escapes_what_it_writes_and_colours_only_when_asked() {
        let mut buf = Vec::new();
        let mut out = Out::plain(&mut buf);
        let name = "x\x1b]0;title\x07";
        writeln!(out, "fn {name}").unwrap();
        out.paint(Style::Bad, "+1 MiB").unwrap();
        out.write_all(b"\xff\x1b").unwrap();
        assert_eq!(String::from_utf8(buf).unwrap(), "fn x\\x1b]0;title\\x07\n+1 MiB\\xff\\x1b");
        let mut buf = Vec::new();
        let mut out = Out { inner: &mut buf, colour: true };
        out.paint(Style::Bad, "up\x1b").unwrap();
        assert_eq!(String::from_utf8(buf).unwrap(), "\x1b[31mup\\x1b\x1b[0m");
    }
}
