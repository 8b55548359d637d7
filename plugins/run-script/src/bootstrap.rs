//! The Bash bootstrap: the helper functions community step templates call, and the deployment
//! variables, followed by `source` of the script body.
//!
//! The helpers print service messages on standard output, which the host parses. Attribute values
//! are base64 of the UTF-8 bytes, on one line (what `base64 -w0` prints):
//!
//! | helper                                   | output |
//! |------------------------------------------|--------|
//! | `get_octopusvariable NAME`               | the value (nothing when undefined) |
//! | `set_octopusvariable NAME VALUE`         | `##octopus[setVariable name='…' value='…']` |
//! | `set_octopusvariable NAME VALUE -sensitive` | `##octopus[setVariable name='…' value='…' sensitive='VHJ1ZQ==']` |
//! | `fail_step MESSAGE`                      | `##octopus[resultMessage message='…']`, then `exit 1` |
//! | `new_octopusartifact PATH [NAME]`        | `##octopus[createArtifact path='…' name='…']` (path made absolute with `$PWD`, name defaults to its file name) |
//! | `write_verbose MESSAGE`                  | `##octopus[stdout-verbose]`, the message, `##octopus[stdout-default]` |
//! | `write_warning MESSAGE`                  | `##octopus[stdout-warning]`, the message, `##octopus[stdout-default]` |
//! | `write_highlight MESSAGE`                | `##octopus[stdout-highlight]`, the message, `##octopus[stdout-default]` |
//!
//! Variables are embedded byte for byte as ANSI-C quoted strings (`$'…'` with `\xHH` escapes) in an
//! associative array, so loading them costs no process per variable. Bash strings cannot hold NUL
//! bytes; a NUL in a name or value is dropped.

use std::fmt::Write as _;

/// The bootstrap's file name in the step's work directory; run as `bash octo-bootstrap.sh`.
pub const BOOTSTRAP_FILE: &str = "octo-bootstrap.sh";

/// The script body's file name in the step's work directory; sourced by the bootstrap.
pub const SCRIPT_FILE: &str = "octo-script.sh";

/// The helper functions, after the variables and before the `source` line.
const HELPERS: &str = r###"
__octo_b64() {
    printf '%s' "$1" | base64 | tr -d '\n'
}

get_octopusvariable() {
    if [ -n "${1-}" ]; then
        printf '%s' "${__octo_variables[$1]-}"
    fi
}

set_octopusvariable() {
    local __octo_name="${1-}" __octo_value="${2-}"
    if [ -z "$__octo_name" ]; then
        echo "set_octopusvariable: a variable name is required" >&2
        return 1
    fi
    if [ "${3-}" = "-sensitive" ]; then
        printf "##octopus[setVariable name='%s' value='%s' sensitive='VHJ1ZQ==']\n" \
            "$(__octo_b64 "$__octo_name")" "$(__octo_b64 "$__octo_value")"
    else
        printf "##octopus[setVariable name='%s' value='%s']\n" \
            "$(__octo_b64 "$__octo_name")" "$(__octo_b64 "$__octo_value")"
    fi
}

fail_step() {
    printf "##octopus[resultMessage message='%s']\n" "$(__octo_b64 "${1-}")"
    exit 1
}

new_octopusartifact() {
    local __octo_path="${1-}" __octo_name="${2-}"
    if [ -z "$__octo_path" ]; then
        echo "new_octopusartifact: a file path is required" >&2
        return 1
    fi
    case "$__octo_path" in
        /*) ;;
        *) __octo_path="$PWD/$__octo_path" ;;
    esac
    if [ -z "$__octo_name" ]; then
        __octo_name="${__octo_path##*/}"
    fi
    printf "##octopus[createArtifact path='%s' name='%s']\n" \
        "$(__octo_b64 "$__octo_path")" "$(__octo_b64 "$__octo_name")"
}

__octo_write() {
    printf '##octopus[stdout-%s]\n' "$1"
    shift
    printf '%s\n' "$*"
    printf '##octopus[stdout-default]\n'
}

write_verbose() { __octo_write verbose "$@"; }
write_warning() { __octo_write warning "$@"; }
write_highlight() { __octo_write highlight "$@"; }
"###;

/// The bootstrap run as `bash octo-bootstrap.sh`: the variables, the helpers, then `source` of the
/// script file `script_file` in the same directory.
pub fn bootstrap<'a>(
    variables: impl IntoIterator<Item = (&'a str, &'a str)>,
    script_file: &str,
) -> String {
    let mut out = prelude(variables);
    let _ = write!(
        out,
        "\nsource {}\n",
        ansi_c_quote(&format!("./{script_file}"))
    );
    out
}

/// The bootstrap as run-script runs it, with nothing on disk: given to `bash -c '. /dev/stdin'` on
/// standard input (bash reads it whole before running it), the variables and helpers, then the script
/// body as a quoted here-document that bash sources (bash keeps a here-document in a pipe, or in a
/// 0600 temporary file it unlinks at once). The body is byte for byte what it would be in a file: no
/// expansion, a final newline added when missing.
pub fn bootstrap_with_script<'a>(
    variables: impl IntoIterator<Item = (&'a str, &'a str)>,
    script: &str,
) -> String {
    let mut out = prelude(variables);
    let lines: std::collections::HashSet<&str> = script.lines().collect();
    let mut delimiter = String::from("__OCTO_SCRIPT_END__");
    while lines.contains(delimiter.as_str()) {
        delimiter.push('_');
    }
    let _ = write!(out, "\nsource /dev/stdin <<'{delimiter}'\n{script}");
    if !script.is_empty() && !script.ends_with('\n') {
        out.push('\n');
    }
    let _ = writeln!(out, "{delimiter}");
    out
}

/// The variables and the helper functions.
fn prelude<'a>(variables: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::from(
        "#!/usr/bin/env bash\n\
         # Generated by Octo's run-script step: deployment variables and the helper functions\n\
         # that step templates call, then the script itself.\n\n\
         declare -A __octo_variables=()\n",
    );
    for (name, value) in variables {
        if name.bytes().all(|b| b == 0) {
            continue; // Bash arrays cannot have an empty key.
        }
        let _ = writeln!(
            out,
            "__octo_variables[{}]={}",
            ansi_c_quote(name),
            ansi_c_quote(value)
        );
    }
    out.push_str(HELPERS);
    out
}

/// The script body as run: CRLF line endings made LF, then `#{...}` substituted.
pub fn script_body(body: &str, vars: &crate::substitute::Variables<'_>) -> String {
    let mut body = body.replace("\r\n", "\n");
    if body.ends_with('\r') {
        // A CRLF file whose last line break lost its LF (e.g. trimmed by a form or `$(...)`).
        body.pop();
        body.push('\n');
    }
    crate::substitute::substitute(&body, vars)
}

/// `s` as a Bash ANSI-C quoted word (`$'…'`) that expands to exactly its bytes. Everything but
/// a few plain ASCII characters is written as `\xHH`. NUL bytes are dropped (Bash strings
/// cannot hold them).
pub fn ansi_c_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 3);
    out.push_str("$'");
    for b in s.bytes() {
        match b {
            0 => {}
            b'a'..=b'z'
            | b'A'..=b'Z'
            | b'0'..=b'9'
            | b' '
            | b'.'
            | b'_'
            | b'-'
            | b'/'
            | b':'
            | b','
            | b'='
            | b'+'
            | b'@'
            | b'%' => out.push(b as char),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    #[test]
    fn quotes_everything_unusual() {
        assert_eq!(ansi_c_quote("abc"), "$'abc'");
        assert_eq!(ansi_c_quote(""), "$''");
        assert_eq!(ansi_c_quote("it's"), "$'it\\x27s'");
        assert_eq!(ansi_c_quote("a]b\n"), "$'a\\x5db\\x0a'");
        assert_eq!(ansi_c_quote("é"), "$'\\xc3\\xa9'");
        assert_eq!(ansi_c_quote("a\0b"), "$'ab'");
    }

    /// Run `bash` with `script` on stdin in a temporary directory; returns (stdout, exit code).
    fn bash(files: &[(&str, &str)], args: &[&str]) -> (Vec<u8>, i32) {
        let dir = std::env::temp_dir().join(format!(
            "octo-run-script-test-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, content) in files {
            std::fs::write(dir.join(name), content).unwrap();
        }
        let out = Command::new("bash")
            .args(args)
            .current_dir(&dir)
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .output()
            .expect("bash runs");
        let _ = std::fs::remove_dir_all(&dir);
        (out.stdout, out.status.code().unwrap_or(-1))
    }

    fn rand_suffix() -> u64 {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        N.fetch_add(1, Ordering::Relaxed)
    }

    fn run_script(vars: &[(&str, &str)], body: &str) -> (String, i32) {
        let boot = bootstrap(vars.iter().copied(), SCRIPT_FILE);
        let (out, code) = bash(
            &[(BOOTSTRAP_FILE, &boot), (SCRIPT_FILE, body)],
            &[BOOTSTRAP_FILE],
        );
        (String::from_utf8(out).unwrap(), code)
    }

    fn b64(s: &str) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in s.as_bytes().chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, &b)| n | (b as u32) << (16 - 8 * i));
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    #[test]
    fn variables_round_trip_byte_for_byte() {
        let awkward = [
            ("Plain", "value"),
            (
                "Octopus.Action[Deploy web].Output.Url",
                "https://x/?a=1&b='2'",
            ),
            ("Quotes", "it's \"quoted\" `tick` $(date) ${HOME} \\ \\n"),
            ("Lines", "line1\nline2\r\n\ttab\n\n"),
            ("Unicode", "ünïcödé ✓ 日本"),
            ("Weird key ]['\"$", "v"),
            ("Star", "*"),
            ("@", "at"),
            ("Empty", ""),
        ];
        for (name, value) in awkward {
            let body = format!(
                "printf '[%s]' \"$(get_octopusvariable {}; printf x)\"",
                ansi_c_quote(name)
            );
            let (out, code) = run_script(&awkward, &body);
            assert_eq!(code, 0, "{name}");
            assert_eq!(out, format!("[{value}x]"), "{name}");
        }
        let (out, _) = run_script(
            &awkward,
            "printf '[%s]' \"$(get_octopusvariable Undefined)\"",
        );
        assert_eq!(out, "[]");
        let (out, _) = run_script(&awkward, "get_octopusvariable; echo ok");
        assert_eq!(out, "ok\n");
    }

    #[test]
    fn service_messages() {
        let (out, code) = run_script(
            &[],
            "set_octopusvariable \"Name\" \"Välue\"\n\
             set_octopusvariable \"Secret\" \"s3cr3t\" -sensitive\n\
             new_octopusartifact \"report.txt\"\n\
             new_octopusartifact /tmp/a.json \"A name\"\n\
             write_verbose \"detail\"\n\
             write_warning careful now\n\
             write_highlight \"look\"\n",
        );
        assert_eq!(code, 0);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            format!(
                "##octopus[setVariable name='{}' value='{}']",
                b64("Name"),
                b64("Välue")
            )
        );
        assert_eq!(
            lines[1],
            format!(
                "##octopus[setVariable name='{}' value='{}' sensitive='VHJ1ZQ==']",
                b64("Secret"),
                b64("s3cr3t")
            )
        );
        assert!(
            lines[2].starts_with("##octopus[createArtifact path='"),
            "{}",
            lines[2]
        );
        assert!(lines[2].ends_with(&format!(" name='{}']", b64("report.txt"))));
        assert_eq!(
            lines[3],
            format!(
                "##octopus[createArtifact path='{}' name='{}']",
                b64("/tmp/a.json"),
                b64("A name")
            )
        );
        assert_eq!(
            &lines[4..],
            [
                "##octopus[stdout-verbose]",
                "detail",
                "##octopus[stdout-default]",
                "##octopus[stdout-warning]",
                "careful now",
                "##octopus[stdout-default]",
                "##octopus[stdout-highlight]",
                "look",
                "##octopus[stdout-default]",
            ]
        );
    }

    #[test]
    fn base64_matches_base64_w0_for_long_values() {
        let long = "x".repeat(200);
        let (out, _) = run_script(&[], &format!("set_octopusvariable n {long}"));
        assert_eq!(
            out,
            format!(
                "##octopus[setVariable name='{}' value='{}']\n",
                b64("n"),
                b64(&long)
            )
        );
    }

    #[test]
    fn fail_step_exits_with_1() {
        let (out, code) = run_script(&[], "echo before\nfail_step \"it broke\"\necho after\n");
        assert_eq!(code, 1);
        assert_eq!(
            out,
            format!(
                "before\n##octopus[resultMessage message='{}']\n",
                b64("it broke")
            )
        );
    }

    #[test]
    fn exit_codes_pass_through() {
        assert_eq!(run_script(&[], "exit 3").1, 3);
        assert_eq!(run_script(&[], "false").1, 1);
        assert_eq!(run_script(&[], "true").1, 0);
        assert_eq!(run_script(&[], "set -e\nfalse\necho no").1, 1);
    }

    #[test]
    fn script_body_normalises_crlf_and_substitutes() {
        let vars = crate::substitute::Variables::new([("Who", "you")]);
        assert_eq!(
            script_body("echo \"#{Who}\"\r\necho '#{Nobody}'\r\n", &vars),
            "echo \"you\"\necho '#{Nobody}'\n"
        );
        assert_eq!(script_body("fi\r", &vars), "fi\n");
        assert_eq!(script_body("a\rb\r\n", &vars), "a\rb\n");
    }

    /// How run-script runs Bash: everything on stdin, nothing written to the working directory.
    fn run_on_stdin(vars: &[(&str, &str)], body: &str) -> (String, i32, Vec<String>) {
        use std::io::Write;
        let dir = std::env::temp_dir().join(format!(
            "octo-bootstrap-stdin-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut child = Command::new("bash")
            .args(["-c", ". /dev/stdin", BOOTSTRAP_FILE])
            .current_dir(&dir)
            .env("LC_ALL", "C")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("bash runs");
        let input = bootstrap_with_script(vars.iter().copied(), body);
        let mut stdin = child.stdin.take().unwrap();
        std::thread::spawn(move || {
            let _ = stdin.write_all(input.as_bytes());
        });
        let out = child.wait_with_output().unwrap();
        let left: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let _ = std::fs::remove_dir_all(&dir);
        (
            String::from_utf8(out.stdout).unwrap(),
            out.status.code().unwrap_or(-1),
            left,
        )
    }

    /// Issue 11, deliverable 6: the variables (sensitive ones included) and the script never sit in
    /// a file of the work directory; the script still runs as if sourced from one.
    #[test]
    fn on_stdin_nothing_is_written_and_the_script_runs_as_sourced() {
        let vars = [("Secret", "hunter2 'x' $(y)"), ("Plain", "p")];
        let body = "printf '[%s]' \"$(get_octopusvariable Secret)\"\n\
                    ls -A\n\
                    cat <<'__OCTO_SCRIPT_END__'\nliteral $HOME\n__OCTO_SCRIPT_END__\n\
                    read -r line || echo stdin-at-eof\n\
                    echo \"$0\"\n\
                    set_octopusvariable Out 1\n\
                    f() { return 3; }; f; echo \"rc=$?\"\n\
                    printf no-newline";
        let (out, code, left) = run_on_stdin(&vars, body);
        assert_eq!(code, 0, "{out}");
        assert!(
            left.is_empty(),
            "files left in the work directory: {left:?}"
        );
        assert_eq!(
            out,
            format!(
                "[hunter2 'x' $(y)]literal $HOME\nstdin-at-eof\n{BOOTSTRAP_FILE}\n\
                 ##octopus[setVariable name='{}' value='{}']\nrc=3\nno-newline",
                b64("Out"),
                b64("1")
            )
        );
        // A failing script's exit status is the step's.
        assert_eq!(run_on_stdin(&[], "exit 7").1, 7);
        assert_eq!(run_on_stdin(&[], "").1, 0);
    }
}
