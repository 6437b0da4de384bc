//! The key statements of a BIND key file, as `tsig-keygen` and `ddns-confgen` write them.

use std::fmt;

/// One `key "name" { algorithm ...; secret "..."; };` block of a BIND key file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFileEntry {
    pub name: String,
    pub algorithm: String,
    pub secret: String,
}

/// Parses the key statements of a BIND `named.conf` fragment, as written by `tsig-keygen` and
/// `ddns-confgen` (`//`, `#` and `/* */` comments allowed). Anything else is refused.
pub fn parse_key_file(text: &str) -> Result<Vec<KeyFileEntry>, String> {
    let tokens = tokenize(text)?;
    let mut it = tokens.into_iter().peekable();
    let mut keys = Vec::new();
    while let Some(tok) = it.next() {
        if tok != Tok::Word("key".into()) {
            return Err(format!("expected `key`, found {tok}"));
        }
        let name = match it.next() {
            Some(Tok::Word(w)) | Some(Tok::Quoted(w)) => w,
            other => return Err(format!("expected a key name, found {}", show(&other))),
        };
        expect(&mut it, Tok::Open, &name)?;
        let (mut algorithm, mut secret) = (None, None);
        loop {
            match it.next() {
                Some(Tok::Close) => break,
                Some(Tok::Word(field)) => {
                    let value = match it.next() {
                        Some(Tok::Word(v)) | Some(Tok::Quoted(v)) => v,
                        other => {
                            return Err(format!(
                                "key \"{name}\": expected a value for `{field}`, found {}",
                                show(&other)
                            ))
                        }
                    };
                    expect(&mut it, Tok::Semi, &name)?;
                    let slot = match field.as_str() {
                        "algorithm" => &mut algorithm,
                        "secret" => &mut secret,
                        _ => return Err(format!("key \"{name}\": unknown statement `{field}`")),
                    };
                    if slot.replace(value).is_some() {
                        return Err(format!("key \"{name}\": `{field}` given twice"));
                    }
                }
                other => {
                    return Err(format!(
                        "key \"{name}\": expected `algorithm`, `secret` or `}}`, found {}",
                        show(&other)
                    ))
                }
            }
        }
        expect(&mut it, Tok::Semi, &name)?;
        let (Some(algorithm), Some(secret)) = (algorithm, secret) else {
            return Err(format!(
                "key \"{name}\": needs both `algorithm` and `secret`"
            ));
        };
        keys.push(KeyFileEntry {
            name,
            algorithm,
            secret,
        });
    }
    if keys.is_empty() {
        return Err("no `key` statement found".into());
    }
    Ok(keys)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Word(String),
    Quoted(String),
    Open,
    Close,
    Semi,
}

impl fmt::Display for Tok {
    // Never echoes a quoted string: it may be the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Word(w) => write!(f, "`{}`", w.chars().take(40).collect::<String>()),
            Tok::Quoted(_) => f.write_str("a quoted string"),
            Tok::Open => f.write_str("`{`"),
            Tok::Close => f.write_str("`}`"),
            Tok::Semi => f.write_str("`;`"),
        }
    }
}

fn show(t: &Option<Tok>) -> String {
    t.as_ref()
        .map_or_else(|| "the end".to_string(), Tok::to_string)
}

fn expect(it: &mut impl Iterator<Item = Tok>, want: Tok, key: &str) -> Result<(), String> {
    match it.next() {
        Some(t) if t == want => Ok(()),
        other => Err(format!(
            "key \"{key}\": expected {want}, found {}",
            show(&other)
        )),
    }
}

fn tokenize(text: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '{' => out.push(Tok::Open),
            '}' => out.push(Tok::Close),
            ';' => out.push(Tok::Semi),
            '#' => skip_line(&mut chars),
            '/' if chars.peek() == Some(&'/') => skip_line(&mut chars),
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut prev = ' ';
                loop {
                    match chars.next() {
                        Some('/') if prev == '*' => break,
                        Some(c) => prev = c,
                        None => return Err("unterminated /* comment".into()),
                    }
                }
            }
            '"' => {
                let mut s = String::new();
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => s.extend(chars.next()),
                        Some(c) => s.push(c),
                        None => return Err("unterminated quoted string".into()),
                    }
                }
                out.push(Tok::Quoted(s));
            }
            c => {
                let mut w = String::from(c);
                while let Some(&n) = chars.peek() {
                    if n.is_whitespace() || matches!(n, '{' | '}' | ';' | '"') {
                        break;
                    }
                    w.push(n);
                    chars.next();
                }
                out.push(Tok::Word(w));
            }
        }
    }
    Ok(out)
}

fn skip_line(chars: &mut impl Iterator<Item = char>) {
    for c in chars.by_ref() {
        if c == '\n' {
            break;
        }
    }
}
