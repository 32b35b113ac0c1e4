//! Safe OTA updates: static checks on release tarballs and release directories, the atomic
//! `current`/`previous` release layout, the post-update boot probe and automatic rollback.
//!
//! Decisions (what a tarball violates, whether a rollback is needed, when a probe has
//! succeeded) are pure functions with unit tests; the code that touches symlinks, files, the
//! network and the restart command is kept thin.

pub mod journal;
pub mod probe;
pub mod release;
pub mod rollback;
pub mod tarball;
pub mod verify;

/// Split a command line into argv the way a POSIX shell splits words, without any expansion:
/// whitespace separates words, single quotes are literal, double quotes allow `\"` and `\\`,
/// a backslash outside quotes escapes the next character. No shell ever runs it.
pub fn split_words(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(ch) => word.push(ch),
                        None => return Err(format!("unterminated single quote in {text:?}")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(ch @ ('"' | '\\' | '$' | '`')) => word.push(ch),
                            Some(ch) => {
                                word.push('\\');
                                word.push(ch);
                            }
                            None => return Err(format!("unterminated double quote in {text:?}")),
                        },
                        Some(ch) => word.push(ch),
                        None => return Err(format!("unterminated double quote in {text:?}")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(ch) => word.push(ch),
                    None => return Err(format!("trailing backslash in {text:?}")),
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    if words.is_empty() {
        return Err("the command is empty".into());
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_words_handles_quotes_and_escapes() {
        assert_eq!(
            split_words("systemctl restart archipelago.service").unwrap(),
            ["systemctl", "restart", "archipelago.service"]
        );
        assert_eq!(
            split_words(r#"/bin/sh '/tmp/a b/restart.sh' "x \"y\"" z\ w ''"#).unwrap(),
            ["/bin/sh", "/tmp/a b/restart.sh", "x \"y\"", "z w", ""]
        );
        assert_eq!(split_words("  a   $(id)  ").unwrap(), ["a", "$(id)"]);
        assert!(split_words("a 'b").is_err());
        assert!(split_words("a \"b").is_err());
        assert!(split_words("a \\").is_err());
        assert!(split_words("   ").is_err());
    }
}
