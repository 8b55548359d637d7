//! Sensitive values that must not stand on the command line, where `ps` shows them to every user for
//! the whole run: `--sensitive-variable NAME` (no `=VALUE`) reads the value from the terminal without
//! echo, or one line of standard input; `--variables-file PATH` holds `NAME=VALUE` lines in a file only
//! its owner can read.

use anyhow::{Context, bail};
use std::io::{BufRead, IsTerminal, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The sensitive variables of a run: those given with a value, then those read from the terminal or
/// stdin (in the order given), then those of the variables file.
pub fn resolve(
    given: &[(String, Option<String>)],
    file: Option<&Path>,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut resolved = Vec::new();
    let stdin = std::io::stdin();
    for (name, value) in given {
        let value = match value {
            Some(value) => value.clone(),
            None if stdin.is_terminal() => read_from_terminal(name)?,
            None => read_line(&mut stdin.lock(), name)?,
        };
        resolved.push((name.clone(), value));
    }
    if let Some(path) = file {
        resolved.extend(read_file(path)?);
    }
    Ok(resolved)
}

/// A password for `what` (e.g. `feed nuget-org`): from the terminal without echo, or one line of stdin.
pub fn read_password(what: &str, from_stdin: bool) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    let line = if !from_stdin && stdin.is_terminal() {
        read_hidden(&format!("Password for {what}: "), what)?
    } else {
        read_line(&mut stdin.lock(), what)?
    };
    if line.is_empty() {
        bail!("the password for {what} is empty");
    }
    Ok(line)
}

fn read_from_terminal(name: &str) -> anyhow::Result<String> {
    read_hidden(&format!("Value of sensitive variable {name}: "), name)
}

fn read_hidden(prompt: &str, name: &str) -> anyhow::Result<String> {
    use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
    let stdin = std::io::stdin();
    let saved = tcgetattr(&stdin).context("cannot read the terminal's settings")?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    tcsetattr(&stdin, OptionalActions::Now, &quiet).context("cannot turn off the echo")?;
    let line = read_line(&mut stdin.lock(), name);
    let _ = tcsetattr(&stdin, OptionalActions::Now, &saved);
    eprintln!();
    line
}

/// One line, without its line ending.
fn read_line(input: &mut impl BufRead, name: &str) -> anyhow::Result<String> {
    let mut line = String::new();
    let n = input
        .read_line(&mut line)
        .with_context(|| format!("cannot read the value of sensitive variable {name}"))?;
    if n == 0 {
        bail!(
            "no value for sensitive variable {name}: standard input ended (type it on a terminal, \
             give one line per variable on stdin, or use --variables-file)"
        );
    }
    let trimmed = line.strip_suffix('\n').unwrap_or(&line);
    Ok(trimmed.strip_suffix('\r').unwrap_or(trimmed).to_string())
}

/// `NAME=VALUE` lines; blank lines and `#` comments are skipped. Refused unless only its owner can read it.
fn read_file(path: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("cannot read the variables file {}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        bail!(
            "the variables file {} can be read by other users (mode {mode:o}): run `chmod 600 {}`",
            path.display(),
            path.display()
        );
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the variables file {}", path.display()))?;
    parse_file(&text).with_context(|| format!("the variables file {}", path.display()))
}

fn parse_file(text: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut vars = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        match line.split_once('=') {
            Some((name, value)) if !name.trim().is_empty() => {
                vars.push((name.trim().to_string(), value.to_string()))
            }
            // The line may hold a secret: name its number, never its text.
            _ => bail!("line {} is not NAME=VALUE", i + 1),
        }
    }
    Ok(vars)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_files() {
        let mut input = std::io::Cursor::new("first\r\nsecond\n");
        assert_eq!(read_line(&mut input, "A").unwrap(), "first");
        assert_eq!(read_line(&mut input, "B").unwrap(), "second");
        let err = read_line(&mut input, "C").unwrap_err().to_string();
        assert!(err.contains("no value for sensitive variable C"), "{err}");

        let vars = parse_file("# comment\n\nToken=a=b c\n Db = x\n").unwrap();
        assert_eq!(
            vars,
            [("Token".into(), "a=b c".into()), ("Db".into(), " x".into())]
        );
        let err = parse_file("ok=1\nhunter2\n").unwrap_err().to_string();
        assert_eq!(err, "line 2 is not NAME=VALUE");
    }
}
