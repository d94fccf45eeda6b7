//! Markdown output (`memlens diff --format markdown`, posted as a pull-request comment): the
//! one place where untrusted text (names from the recordings, their command lines, the paths
//! given) is made inert. A name can then neither break a table (`|`, a line break) nor become
//! markup, an image, a link or HTML (`<img>`, `![x](url)`, `[x](url)`, `**`).
//!
//! Two forms, both rendered as the exact text: [`code`] for a name in a table cell (a code
//! span, inside which nothing but `|` is interpreted in GitHub's tables) and [`text`] for
//! words (every ASCII punctuation character backslash-escaped, as CommonMark allows). Control
//! characters and line breaks are shown as escapes (`\x1b`, `\n`) in both.

use crate::term::escape_line;

/// `name` as a code span for a table cell: control characters and line breaks shown as
/// escapes, `|` escaped for the table (GitHub removes the backslash), and a backtick fence
/// longer than any run of backticks inside.
pub fn code(name: &str) -> String {
    let shown = escape_line(name).replace('|', "\\|");
    if shown.is_empty() {
        return String::new();
    }
    let longest = shown.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest + 1);
    // A span that starts or ends with a backtick needs a space inside the fence (which the
    // renderer strips); so does one that starts and ends with a space.
    let pad = shown.starts_with('`')
        || shown.ends_with('`')
        || (shown.starts_with(' ') && shown.ends_with(' '));
    let space = if pad { " " } else { "" };
    format!("{fence}{space}{shown}{space}{fence}")
}

/// `words` as plain markdown text: control characters and line breaks shown as escapes, every
/// ASCII punctuation character backslash-escaped (no emphasis, link, image, HTML, table cell
/// break or autolinked URL can start).
pub fn text(words: &str) -> String {
    let shown = escape_line(words);
    let mut out = String::with_capacity(shown.len() + 8);
    for c in shown.chars() {
        if c.is_ascii_punctuation() {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_code_spans_that_keep_the_table() {
        assert_eq!(code("build_index"), "`build_index`");
        assert_eq!(code("a|b"), "`a\\|b`");
        assert_eq!(code("x`y"), "``x`y``");
        assert_eq!(code("`"), "`` ` ``");
        assert_eq!(code("two\nlines\x1b"), "`two\\nlines\\x1b`");
        assert_eq!(code("<img src=x>"), "`<img src=x>`");
        assert_eq!(code(""), "");
    }

    #[test]
    fn words_escape_every_punctuation() {
        assert_eq!(text("![x](http://e/x.png)"), "\\!\\[x\\]\\(http\\:\\/\\/e\\/x\\.png\\)");
        assert_eq!(text("a | b\nc"), "a \\| b\\\\nc");
        assert_eq!(text("plain words"), "plain words");
    }
}
