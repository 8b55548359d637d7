//! The Python bootstrap: Octopus's Python helper functions, and how the script and the deployment
//! variables reach it.
//!
//! run-script runs `python3 -u -c BOOTSTRAP` ([`BOOTSTRAP`] is `bootstrap.py` beside this file) and
//! writes [`stdin`] to its standard input: the script body, then one line per variable, each
//! base64 of its UTF-8 bytes. Nothing of the script or the variables is written to a file or put on
//! the command line. The bootstrap reads all of it, gives the script an empty standard input, and
//! runs it with the helpers as globals:
//!
//! | helper                                        | output |
//! |-----------------------------------------------|--------|
//! | `get_octopusvariable(name)`                   | the value; `KeyError` when undefined (as Calamari) |
//! | `set_octopusvariable(name, value, sensitive=False)` | `##octopus[setVariable name='…' value='…']` (`sensitive='VHJ1ZQ=='` when sensitive) |
//! | `createartifact(path, name=None)`             | `##octopus[createArtifact path='…' name='…']` (path made absolute) |
//! | `failstep(message=None)`                      | `##octopus[resultMessage message='…']` when given, then exit code 1 |
//! | `printverbose`, `printhighlight`, `printwait`, `printwarning` | `##octopus[stdout-LEVEL]`, the message, `##octopus[stdout-default]` |
//! | `updateprogress(percentage, message="")`     | `##octopus[progress …]` (ignored by the host) |
//!
//! `octopusvariables` is the dictionary of every variable; `os`, `sys` and `base64` are there too,
//! as they are in Calamari's scripts. The script runs as `__main__` with `__file__` naming
//! `octo-script.py` in the work directory (no such file is written). A syntax error or an exception
//! escaping the script prints Python's own message (and traceback) on standard error and a
//! one-line `resultMessage` — `the Python script raised ValueError: … (octo-script.py, line 4)` —
//! which becomes the step's failure; exit code 1.

/// The bootstrap's source, passed with `python3 -u -c`.
pub const BOOTSTRAP: &str = include_str!("bootstrap.py");

/// What the bootstrap reads on standard input: the script body, then the variables.
pub fn stdin<'a>(body: &str, variables: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() * 4 / 3 + 64);
    base64_into(body.as_bytes(), &mut out);
    out.push(b'\n');
    for (name, value) in variables {
        base64_into(name.as_bytes(), &mut out);
        out.push(b' ');
        base64_into(value.as_bytes(), &mut out);
        out.push(b'\n');
    }
    out
}

fn base64_into(bytes: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(crate::substitute::filters::base64_encode(bytes).as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::process::{Command, Stdio};

    fn b64(s: &str) -> String {
        let mut out = Vec::new();
        base64_into(s.as_bytes(), &mut out);
        String::from_utf8(out).unwrap()
    }

    /// Runs `body` as run-script does, in a temporary directory: (stdout, stderr, exit code).
    fn python(vars: &[(&str, &str)], body: &str) -> Option<(String, String, i32)> {
        let dir = tempdir();
        let child = Command::new("python3")
            .args(["-u", "-c", BOOTSTRAP])
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let Ok(mut child) = child else {
            println!("note: no python3 on this machine; skipping");
            return None;
        };
        child
            .stdin
            .take()
            .unwrap()
            .write_all(&stdin(body, vars.iter().copied()))
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        Some((
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
            out.status.code().unwrap_or(-1),
        ))
    }

    fn tempdir() -> std::path::PathBuf {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "octo-run-script-py-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// The one-line failure a `resultMessage` line carries.
    fn result_message(stdout: &str) -> String {
        let line = stdout
            .lines()
            .find_map(|l| l.strip_prefix("##octopus[resultMessage message='"))
            .and_then(|l| l.strip_suffix("']"))
            .unwrap_or_else(|| panic!("no result message in {stdout:?}"));
        decode(line)
    }

    fn decode(b64_text: &str) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut bits = 0u32;
        let mut n = 0;
        let mut out = Vec::new();
        for c in b64_text.bytes().filter(|&c| c != b'=') {
            bits = bits << 6 | A.iter().position(|&a| a == c).unwrap() as u32;
            n += 6;
            if n >= 8 {
                n -= 8;
                out.push((bits >> n) as u8);
            }
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn base64_is_standard() {
        assert_eq!(b64(""), "");
        assert_eq!(b64("a"), "YQ==");
        assert_eq!(b64("ab"), "YWI=");
        assert_eq!(b64("abc"), "YWJj");
        assert_eq!(b64("Välue"), "VsOkbHVl");
        assert_eq!(decode("VsOkbHVl"), "Välue");
    }

    #[test]
    fn variables_and_helpers() {
        let awkward = "it's \"quoted\"\nline2\r\n\ttab ünï ✓ \\ '''";
        let vars = [("Name", "World"), ("Awkward", awkward), ("Empty", "")];
        let Some((out, err, code)) = python(
            &vars,
            "print('hi', get_octopusvariable('Name'))\n\
             assert octopusvariables['Awkward'] == get_octopusvariable('Awkward')\n\
             print(get_octopusvariable('Awkward').encode('utf-8').hex())\n\
             print(repr(octopusvariables['Empty']), sorted(octopusvariables))\n\
             print(sys.stdin.read() == '', os.path.basename(__file__), __name__)\n\
             set_octopusvariable('Answer', 42)\n\
             set_octopusvariable('Secret', 's3cr3t', sensitive=True)\n\
             print(get_octopusvariable('Answer'))\n\
             createartifact('report.txt')\n\
             createartifact('/tmp/a.json', 'A name')\n\
             printverbose('detail')\n\
             printhighlight('look')\n\
             printwait('waiting')\n\
             printwarning('careful')\n",
        ) else {
            return;
        };
        assert_eq!((code, err.as_str()), (0, ""), "{out}");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "hi World");
        let hex: String = awkward.bytes().map(|b| format!("{b:02x}")).collect();
        assert_eq!(lines[1], hex);
        assert_eq!(lines[2], "'' ['Awkward', 'Empty', 'Name']");
        assert_eq!(lines[3], "True octo-script.py __main__");
        assert_eq!(
            lines[4],
            format!(
                "##octopus[setVariable name='{}' value='{}']",
                b64("Answer"),
                b64("42")
            )
        );
        assert_eq!(
            lines[5],
            format!(
                "##octopus[setVariable name='{}' value='{}' sensitive='VHJ1ZQ==']",
                b64("Secret"),
                b64("s3cr3t")
            )
        );
        assert_eq!(lines[6], "42");
        assert!(
            lines[7].starts_with("##octopus[createArtifact path='"),
            "{}",
            lines[7]
        );
        assert!(lines[7].ends_with(&format!(" name='{}']", b64("report.txt"))));
        assert_eq!(
            lines[8],
            format!(
                "##octopus[createArtifact path='{}' name='{}']",
                b64("/tmp/a.json"),
                b64("A name")
            )
        );
        let mut expected = Vec::new();
        for (level, message) in [
            ("verbose", "detail"),
            ("highlight", "look"),
            ("wait", "waiting"),
            ("warning", "careful"),
        ] {
            expected.push(format!("##octopus[stdout-{level}]"));
            expected.push(message.to_string());
            expected.push("##octopus[stdout-default]".to_string());
        }
        assert_eq!(lines[9..], expected);
    }

    #[test]
    fn failstep_and_exit_codes() {
        let Some((out, _, code)) =
            python(&[], "print('before')\nfailstep('it broke')\nprint('after')")
        else {
            return;
        };
        assert_eq!(code, 1);
        assert_eq!(
            out,
            format!(
                "before\n##octopus[resultMessage message='{}']\n",
                b64("it broke")
            )
        );
        let (out, _, code) = python(&[], "failstep()").unwrap();
        assert_eq!((out.as_str(), code), ("", 1));
        assert_eq!(python(&[], "sys.exit(3)").unwrap().2, 3);
        assert_eq!(python(&[], "exit(4)").unwrap().2, 4);
        assert_eq!(python(&[], "pass").unwrap().2, 0);
        assert_eq!(python(&[], "").unwrap().2, 0);
    }

    #[test]
    fn a_syntax_error_is_pythons_own_message_with_the_line() {
        let Some((out, err, code)) = python(&[], "print(1)\nx = (\n") else {
            return;
        };
        assert_eq!(code, 1);
        assert_eq!(
            result_message(&out),
            "the Python script does not compile: SyntaxError: '(' was never closed (octo-script.py, line 2)"
        );
        assert!(err.contains("File \"octo-script.py\", line 2"), "{err}");
        assert!(!out.contains("\n1\n"), "nothing ran: {out}");
    }

    #[test]
    fn an_escaping_exception_is_one_line_with_the_script_line() {
        let Some((out, err, code)) = python(
            &[],
            "def f():\n    raise ValueError('bad\\nthing')\nprint('before')\nf()\n",
        ) else {
            return;
        };
        assert_eq!(code, 1);
        assert_eq!(
            result_message(&out),
            "the Python script raised ValueError: bad thing (octo-script.py, line 2)"
        );
        // Python's traceback, with the script's own lines and without the bootstrap's frame.
        assert!(
            err.starts_with(
                "Traceback (most recent call last):\n  File \"octo-script.py\", line 4"
            ),
            "{err}"
        );
        assert!(err.contains("    raise ValueError('bad\\nthing')"), "{err}");
    }

    #[test]
    fn a_helper_called_without_its_argument() {
        let Some((out, _, code)) = python(&[], "x = 1\nset_octopusvariable('x')\n") else {
            return;
        };
        assert_eq!(code, 1);
        assert_eq!(
            result_message(&out),
            "the Python script raised TypeError: set_octopusvariable() missing 1 required \
             positional argument: 'value' (octo-script.py, line 2)"
        );
        let (out, _, _) = python(&[], "get_octopusvariable('Undefined')").unwrap();
        assert_eq!(
            result_message(&out),
            "the Python script raised KeyError: 'Undefined' (octo-script.py, line 1)"
        );
    }
}
