//! Octostache-style `#{...}` substitution in script bodies, the subset community step templates use.
//!
//! - `#{Name}` becomes the variable's value. An undefined name is left as is: templates test for
//!   that (`case "$X" in "#{"*) ...`).
//! - `#{Name | ToLower}`, `#{Name | ToUpper}`, `#{Name | Trim}` apply filters (names
//!   case-insensitive, several may be chained).
//! - `#{if Name}...#{else}...#{/if}` and `#{unless Name}...#{else}...#{/unless}`: a name is truthy
//!   when it is defined, not empty and not `False` or `0`; undefined names are falsy. A condition
//!   may also compare: `#{if Name == "value"}`, `#{if Name != "value"}`.
//! - `##{` is an escape for a literal `#{`.
//!
//! Anything else (unknown filters, `#{each}`, unbalanced blocks, text that only looks like a tag)
//! is left untouched, so substitution never makes a script fail.

use std::collections::HashMap;

/// Variable lookup for substitution: exact name first, then case-insensitive (Octopus variable
/// names are case-insensitive).
#[derive(Debug, Default, Clone)]
pub struct Variables<'a> {
    exact: HashMap<&'a str, &'a str>,
    folded: HashMap<String, &'a str>,
}

impl<'a> Variables<'a> {
    /// Build from `(name, value)` pairs; a later pair with the same name wins.
    pub fn new(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut v = Self::default();
        for (name, value) in pairs {
            v.exact.insert(name, value);
            v.folded.insert(name.to_lowercase(), value);
        }
        v
    }

    /// The value of `name`, if defined.
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.exact
            .get(name)
            .or_else(|| self.folded.get(&name.to_lowercase()))
            .copied()
    }
}

/// Substitute `#{...}` expressions in `text`.
pub fn substitute(text: &str, vars: &Variables<'_>) -> String {
    let tokens = tokenize(text);
    let blocks = match_blocks(&tokens);
    let mut out = String::with_capacity(text.len());
    render(&tokens, &blocks, 0, tokens.len(), vars, &mut out);
    out
}

/// The longest text between `#{` and `}` that can be an expression.
const MAX_TAG_LEN: usize = 512;

#[derive(Debug, Clone, PartialEq)]
enum Token<'a> {
    Text(&'a str),
    Tag { raw: &'a str, tag: Tag<'a> },
}

#[derive(Debug, Clone, PartialEq)]
enum Tag<'a> {
    /// `if`/`unless`; `cond` is `None` when the condition does not parse.
    Open {
        unless: bool,
        cond: Option<Cond<'a>>,
    },
    Else,
    Close {
        unless: bool,
    },
    /// `Name | Filter...`; `None` when it does not parse.
    Subst(Option<Expr<'a>>),
}

#[derive(Debug, Clone, PartialEq)]
enum Cond<'a> {
    Truthy(&'a str),
    Eq(&'a str, &'a str),
    Ne(&'a str, &'a str),
}

#[derive(Debug, Clone, PartialEq)]
struct Expr<'a> {
    name: &'a str,
    filters: Vec<Filter>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Filter {
    ToLower,
    ToUpper,
    Trim,
}

fn tokenize(text: &str) -> Vec<Token<'_>> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i + 1 < bytes.len() {
        if bytes[i] == b'#' && bytes[i + 1] == b'#' && bytes.get(i + 2) == Some(&b'{') {
            // `##{` is an escaped `#{`.
            tokens.push(Token::Text(&text[start..i]));
            tokens.push(Token::Text("#{"));
            i += 3;
            start = i;
            continue;
        }
        if bytes[i] == b'#' && bytes[i + 1] == b'{' {
            let inner_start = i + 2;
            let end = bytes[inner_start..]
                .iter()
                .take(MAX_TAG_LEN + 1)
                .position(|&b| matches!(b, b'}' | b'{' | b'\n' | b'\r'));
            if let Some(len) = end.filter(|&len| bytes[inner_start + len] == b'}') {
                let close = inner_start + len;
                tokens.push(Token::Text(&text[start..i]));
                tokens.push(Token::Tag {
                    raw: &text[i..=close],
                    tag: classify(&text[inner_start..close]),
                });
                i = close + 1;
                start = i;
                continue;
            }
            i += 2;
            continue;
        }
        i += 1;
    }
    tokens.push(Token::Text(&text[start..]));
    tokens.retain(|t| !matches!(t, Token::Text("")));
    tokens
}

fn classify(inner: &str) -> Tag<'_> {
    let t = inner.trim();
    if let Some(rest) = keyword(t, "if") {
        return Tag::Open {
            unless: false,
            cond: parse_cond(rest),
        };
    }
    if let Some(rest) = keyword(t, "unless") {
        return Tag::Open {
            unless: true,
            cond: parse_cond(rest),
        };
    }
    match t {
        "else" => Tag::Else,
        "/if" => Tag::Close { unless: false },
        "/unless" => Tag::Close { unless: true },
        _ => Tag::Subst(parse_expr(t)),
    }
}

/// `rest` when `t` is `word` followed by whitespace and more.
fn keyword<'a>(t: &'a str, word: &str) -> Option<&'a str> {
    let rest = t.strip_prefix(word)?;
    rest.starts_with(char::is_whitespace).then(|| rest.trim())
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('/') && !name.contains(['"', '|', '{', '}'])
}

fn parse_cond(rest: &str) -> Option<Cond<'_>> {
    let comparison = |op: &str| -> Option<Option<(&str, &str)>> {
        let (name, literal) = rest.split_once(op)?;
        let name = name.trim();
        let literal = literal.trim();
        let literal = literal
            .strip_prefix('"')
            .and_then(|l| l.strip_suffix('"'))
            .filter(|l| !l.contains('"'));
        Some(literal.filter(|_| valid_name(name)).map(|l| (name, l)))
    };
    if let Some(parsed) = comparison("==") {
        return parsed.map(|(n, l)| Cond::Eq(n, l));
    }
    if let Some(parsed) = comparison("!=") {
        return parsed.map(|(n, l)| Cond::Ne(n, l));
    }
    valid_name(rest).then_some(Cond::Truthy(rest))
}

fn parse_expr(t: &str) -> Option<Expr<'_>> {
    let mut parts = t.split('|');
    let name = parts.next()?.trim();
    if !valid_name(name) {
        return None;
    }
    let filters = parts
        .map(|f| match f.trim().to_ascii_lowercase().as_str() {
            "tolower" => Some(Filter::ToLower),
            "toupper" => Some(Filter::ToUpper),
            "trim" => Some(Filter::Trim),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Expr { name, filters })
}

/// A matched block: the indices of its open, optional else, and close tags.
#[derive(Debug, Clone, Copy)]
struct Block {
    else_at: Option<usize>,
    close_at: usize,
}

/// Pair `if`/`unless` tags with their `else` and closing tags. Unbalanced tags stay unmatched
/// (and are rendered as text).
fn match_blocks(tokens: &[Token<'_>]) -> HashMap<usize, Block> {
    struct Open {
        at: usize,
        unless: bool,
        else_at: Option<usize>,
    }
    let mut stack: Vec<Open> = Vec::new();
    let mut blocks = HashMap::new();
    for (at, token) in tokens.iter().enumerate() {
        let Token::Tag { tag, .. } = token else {
            continue;
        };
        match tag {
            Tag::Open { unless, .. } => stack.push(Open {
                at,
                unless: *unless,
                else_at: None,
            }),
            Tag::Else => {
                if let Some(open) = stack.last_mut().filter(|o| o.else_at.is_none()) {
                    open.else_at = Some(at);
                }
            }
            Tag::Close { unless } => {
                if let Some(pos) = stack.iter().rposition(|o| o.unless == *unless) {
                    // Opens above `pos` never closed: they stay unmatched.
                    let open = stack.drain(pos..).next().expect("pos is in the stack");
                    blocks.insert(
                        open.at,
                        Block {
                            else_at: open.else_at,
                            close_at: at,
                        },
                    );
                }
            }
            Tag::Subst(_) => {}
        }
    }
    blocks
}

fn render(
    tokens: &[Token<'_>],
    blocks: &HashMap<usize, Block>,
    start: usize,
    end: usize,
    vars: &Variables<'_>,
    out: &mut String,
) {
    let mut i = start;
    while i < end {
        match &tokens[i] {
            Token::Text(t) => out.push_str(t),
            Token::Tag { raw, tag } => match (tag, blocks.get(&i)) {
                (Tag::Open { unless, cond }, Some(block)) => {
                    let then_end = block.else_at.unwrap_or(block.close_at);
                    match cond.as_ref().map(|c| eval(c, vars) != *unless) {
                        Some(true) => render(tokens, blocks, i + 1, then_end, vars, out),
                        Some(false) => {
                            if let Some(e) = block.else_at {
                                render(tokens, blocks, e + 1, block.close_at, vars, out);
                            }
                        }
                        None => {
                            // A condition we cannot evaluate: keep the tags, substitute inside.
                            out.push_str(raw);
                            render(tokens, blocks, i + 1, then_end, vars, out);
                            if let Some(e) = block.else_at {
                                out.push_str(raw_of(&tokens[e]));
                                render(tokens, blocks, e + 1, block.close_at, vars, out);
                            }
                            out.push_str(raw_of(&tokens[block.close_at]));
                        }
                    }
                    i = block.close_at + 1;
                    continue;
                }
                (Tag::Subst(Some(expr)), _) => match vars.get(expr.name) {
                    Some(value) => out.push_str(&apply(value, &expr.filters)),
                    None => out.push_str(raw),
                },
                _ => out.push_str(raw),
            },
        }
        i += 1;
    }
}

fn raw_of<'a>(token: &Token<'a>) -> &'a str {
    match token {
        Token::Text(t) => t,
        Token::Tag { raw, .. } => raw,
    }
}

fn eval(cond: &Cond<'_>, vars: &Variables<'_>) -> bool {
    match cond {
        Cond::Truthy(name) => vars.get(name).is_some_and(truthy),
        Cond::Eq(name, literal) => vars.get(name) == Some(*literal),
        Cond::Ne(name, literal) => vars.get(name) != Some(*literal),
    }
}

/// Defined, non-empty, and not `False` (any case) or `0`.
pub fn truthy(value: &str) -> bool {
    let v = value.trim();
    !(v.is_empty() || v == "0" || v.eq_ignore_ascii_case("false"))
}

fn apply(value: &str, filters: &[Filter]) -> String {
    filters
        .iter()
        .fold(value.to_owned(), |v, filter| match filter {
            Filter::ToLower => v.to_lowercase(),
            Filter::ToUpper => v.to_uppercase(),
            Filter::Trim => v.trim().to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(text: &str, pairs: &[(&str, &str)]) -> String {
        substitute(text, &Variables::new(pairs.iter().copied()))
    }

    #[test]
    fn replaces_defined_names_and_keeps_undefined_ones() {
        let vars = [("Name", "world"), ("Octopus.Action[Deploy].Output.X", "x!")];
        assert_eq!(sub("hello #{Name}", &vars), "hello world");
        assert_eq!(sub("#{ Name }#{Name}", &vars), "worldworld");
        assert_eq!(sub("#{name}", &vars), "world", "case-insensitive");
        assert_eq!(sub("#{Octopus.Action[Deploy].Output.X}", &vars), "x!");
        assert_eq!(sub("x=\"#{Missing}\"", &vars), "x=\"#{Missing}\"");
        assert_eq!(sub("#{Missing | ToLower}", &vars), "#{Missing | ToLower}");
    }

    #[test]
    fn filters() {
        let vars = [("Id", "Deployments-12"), ("Pad", "  a  ")];
        assert_eq!(sub("#{Id | ToLower}", &vars), "deployments-12");
        assert_eq!(sub("#{Id|ToUpper}", &vars), "DEPLOYMENTS-12");
        assert_eq!(sub("[#{Pad | Trim | toupper}]", &vars), "[A]");
        assert_eq!(sub("#{Id | Format \"x\"}", &vars), "#{Id | Format \"x\"}");
        assert_eq!(sub("#{Id | HtmlEscape}", &vars), "#{Id | HtmlEscape}");
    }

    #[test]
    fn conditionals() {
        let vars = [
            ("On", "True"),
            ("Off", "False"),
            ("Zero", "0"),
            ("Empty", ""),
        ];
        assert_eq!(sub("#{if On}yes#{/if}", &vars), "yes");
        assert_eq!(sub("#{if Off}yes#{else}no#{/if}", &vars), "no");
        assert_eq!(sub("#{if Zero}yes#{else}no#{/if}", &vars), "no");
        assert_eq!(sub("#{if Empty}yes#{else}no#{/if}", &vars), "no");
        assert_eq!(sub("#{if Missing}yes#{else}no#{/if}", &vars), "no");
        assert_eq!(sub("#{unless Off}run#{/unless}", &vars), "run");
        assert_eq!(sub("#{unless On}run#{else}skip#{/unless}", &vars), "skip");
        assert_eq!(
            sub("#{if On}a#{if Off}b#{else}c#{/if}d#{/if}", &vars),
            "acd"
        );
        assert_eq!(sub("#{if On == \"True\"}t#{/if}", &vars), "t");
        assert_eq!(sub("#{if On != \"True\"}t#{else}f#{/if}", &vars), "f");
        assert_eq!(sub("#{if On}#{On}#{/if}", &vars), "True");
    }

    #[test]
    fn leaves_what_it_cannot_parse() {
        let vars = [("On", "True"), ("X", "1")];
        // Unbalanced blocks.
        assert_eq!(
            sub("#{if On}never closed #{X}", &vars),
            "#{if On}never closed 1"
        );
        assert_eq!(sub("stray #{/if} #{else}", &vars), "stray #{/if} #{else}");
        // A condition it cannot evaluate keeps its tags but substitutes inside.
        assert_eq!(
            sub("#{if On | ToLower}#{X}#{/if}", &vars),
            "#{if On | ToLower}1#{/if}"
        );
        // `#{each}` is not supported.
        assert_eq!(
            sub("#{each a in B}#{a}#{/each}", &vars),
            "#{each a in B}#{a}#{/each}"
        );
        // Bash that only looks like a tag, spanning lines.
        let bash = "case \"$V\" in \"#{\"*) V=\"\" ;; esac\necho }";
        assert_eq!(sub(bash, &vars), bash);
        assert_eq!(sub("#{", &vars), "#{");
        assert_eq!(sub("ends with #", &vars), "ends with #");
        assert_eq!(sub("#{}", &vars), "#{}");
        assert_eq!(sub("${X} $#{X}", &vars), "${X} $1");
    }

    #[test]
    fn escapes() {
        let vars = [("X", "1")];
        assert_eq!(sub("##{X} #{X}", &vars), "#{X} 1");
        assert_eq!(
            sub(
                "echo \"Created output variable: ##{Octopus.Action[$s].Output.Json}\"",
                &vars
            ),
            "echo \"Created output variable: #{Octopus.Action[$s].Output.Json}\""
        );
    }

    #[test]
    fn values_are_inserted_verbatim() {
        let vars = [("V", "#{X} $(rm -rf /) ünï \\n"), ("X", "no")];
        assert_eq!(sub("#{V}", &vars), "#{X} $(rm -rf /) ünï \\n");
    }

    #[test]
    fn opslevel_template_blocks() {
        let body = "deployer:\n#{if Octopus.Release.Package}\n#{if Octopus.Release.Package[].Commits}\ncommit:\n  sha: \"#{Octopus.Release.Package[0].Commits[0].CommitId}\"\n#{/if}\n#{/if}\nEOF\n";
        assert_eq!(sub(body, &[]), "deployer:\n\nEOF\n");
        let vars = [
            ("Octopus.Release.Package", "x"),
            ("Octopus.Release.Package[].Commits", "y"),
            ("Octopus.Release.Package[0].Commits[0].CommitId", "abc"),
        ];
        assert_eq!(
            sub(body, &vars),
            "deployer:\n\n\ncommit:\n  sha: \"abc\"\n\n\nEOF\n"
        );
    }
}
