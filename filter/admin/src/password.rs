//! Which passwords the admin command refuses (docs/etcd.md lists the rules).

/// Passwords every guessing list starts with (compared without case, digits and symbols
/// stripped from the end).
const COMMON: &[&str] = &[
    "password",
    "passw0rd",
    "qwerty",
    "qwertyuiop",
    "letmein",
    "welcome",
    "admin",
    "administrator",
    "iloveyou",
    "monkey",
    "dragon",
    "football",
    "baseball",
    "sunshine",
    "princess",
    "changeme",
    "secret",
    "dynedge",
    "router",
    "default",
    "abc123",
    "123456",
    "12345678",
    "123456789",
    "1234567890",
    "111111",
    "000000",
];

pub const MIN_LEN: usize = 12;
pub const MAX_LEN: usize = 1024;

/// Refuses: shorter than 12 characters (or longer than 1024); one repeated character; a run
/// of consecutive characters (`abcdef…`, `123456…`); containing the user name; a common
/// password with digits/symbols appended.
pub fn check(user: &str, pw: &str) -> Result<(), String> {
    let n = pw.chars().count();
    if n < MIN_LEN {
        return Err(format!(
            "password refused: shorter than {MIN_LEN} characters"
        ));
    }
    if n > MAX_LEN {
        return Err(format!(
            "password refused: longer than {MAX_LEN} characters"
        ));
    }
    let chars: Vec<char> = pw.chars().collect();
    if chars.iter().all(|c| *c == chars[0]) {
        return Err("password refused: one repeated character".into());
    }
    if chars
        .windows(2)
        .all(|w| (w[1] as u32).wrapping_sub(w[0] as u32) == 1)
    {
        return Err("password refused: a run of consecutive characters".into());
    }
    let lower = pw.to_lowercase();
    if !user.is_empty() && lower.contains(&user.to_lowercase()) {
        return Err("password refused: contains the user name".into());
    }
    let stem = lower.trim_end_matches(|c: char| !c.is_alphabetic());
    let stem = if stem.is_empty() {
        lower.as_str()
    } else {
        stem
    };
    if COMMON.contains(&stem) || COMMON.contains(&lower.as_str()) {
        return Err("password refused: a common password".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_passwords_are_refused_with_the_rule_they_break() {
        let cases = [
            ("short", "shorter than"),
            ("aaaaaaaaaaaaaaaa", "repeated"),
            ("abcdefghijklmn", "consecutive"),
            ("alice-is-the-best", "user name"),
            ("Password123456!", "common"),
            ("qwertyuiop2024", "common"),
        ];
        for (pw, why) in cases {
            let e = check("alice", pw).unwrap_err();
            assert!(e.contains(why), "{pw}: {e}");
        }
    }

    #[test]
    fn a_long_unremarkable_passphrase_is_accepted() {
        assert!(check("alice", "correct horse battery staple").is_ok());
    }
}
