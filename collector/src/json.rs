//! JSON output (`--json`, `--format json`): the one place it is written. serde escapes the C0
//! control characters in strings; this also escapes the characters a terminal can still act
//! on or that hide or reorder text (C1 controls, bidirectional overrides, zero-width ones), so
//! JSON printed to a terminal is as inert as the text output ([`crate::term`]). The document
//! means the same: outside strings JSON is ASCII, and `\uXXXX` is the same character.

use std::io::Write;

use serde::Serialize;

/// Writes `value` as pretty JSON and a line feed.
pub fn write(out: &mut impl Write, value: &impl Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    let mut safe = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\u{80}'..='\u{9f}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}' | '\u{feff}')
        {
            safe.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            safe.push(c);
        }
    }
    writeln!(out, "{safe}")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn invisible_and_c1_characters_are_escaped_and_the_value_is_the_same() {
        let name = "a\u{9b}31m\u{202e}b\x1bc";
        let mut out = Vec::new();
        super::write(&mut out, &serde_json::json!({ "name": name })).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains(r#""a\u009b31m\u202eb\u001bc""#), "{text}");
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["name"], name);
    }
}
