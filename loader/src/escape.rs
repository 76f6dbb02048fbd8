//! Text from outside (a server's messages and ref names, a repository's content, a user's
//! `--path`) is shown with its control characters escaped, so it cannot move the cursor, recolour
//! a terminal, forge log lines or hide what follows.

/// `text` with every control character (C0, DEL, C1) written as a Rust escape (`\n`, `\u{1b}`).
pub fn controls(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::controls;

    #[test]
    fn control_characters_are_escaped_and_everything_else_kept() {
        assert_eq!(controls("plain café ✓"), "plain café ✓");
        assert_eq!(controls("a\nb\tc\r"), "a\\nb\\tc\\r");
        assert_eq!(
            controls("\x1b[2J\x07\u{9b}x\x7f"),
            "\\u{1b}[2J\\u{7}\\u{9b}x\\u{7f}"
        );
    }
}
