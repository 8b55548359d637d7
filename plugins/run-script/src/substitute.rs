//! Octostache `#{...}` substitution in script bodies: what community step templates use.
//!
//! Parsing (`octostache/parse.rs`) is apart from evaluation (here) and the filters
//! (`octostache/filters.rs`); both follow the Octostache project's own tests.
//!
//! - `#{Name}` becomes the variable's value. An undefined name is left as is: templates test for
//!   that (`case "$X" in "#{"*) ...`). Values are inserted verbatim (a `#{...}` inside a value is
//!   not evaluated again).
//! - Names may hold indexers, which may hold nested expressions:
//!   `#{Octopus.Action[Deploy web].Output.Url}`, `#{Octopus.Step[#{a.StepName}].Status}`.
//! - Filters, chained, names case-insensitive, with arguments (bare words, `"quoted"`, nested
//!   `#{...}`): `ToLower`, `ToUpper`, `Trim [start|end]`, `ToBase64`/`Base64 [utf8|unicode]`,
//!   `FromBase64`, `HtmlEscape`, `XmlEscape`, `JsonEscape`, `UriEscape`, `UriDataEscape`,
//!   `Truncate N`, `Substring [START] LENGTH`, `Replace REGEX [WITH]`, `Match REGEX`,
//!   `StartsWith`/`EndsWith`/`Contains TEXT`, `Append`/`Prepend TEXT...`, `Format [TYPE] F2|N0|D5|X`,
//!   `NowDate`/`NowDateUtc [FORMAT]` (UTC).
//! - `#{if Name}...#{else}...#{/if}` and `#{unless Name}...#{/unless}`: a name is truthy when it is
//!   defined, not empty and not `0`, `False` or `No`; undefined names are falsy. A condition may
//!   compare with `==` or `!=` to a `"literal"` or another variable.
//! - `#{each item in Collection}...#{/each}`: over the keys of an indexed collection
//!   (`Octopus.Action[A].Name`, `Octopus.Action[B].Name` → `A`, `B`; `#{item.Name}`, `#{item.Key}`),
//!   else over the comma-separated items of the value; `Octopus.Template.Each.Index`, `.First` and
//!   `.Last` inside.
//! - `##{` is an escape for a literal `#{`.
//!
//! Anything else (unknown filters, filters that cannot apply, unbalanced blocks, text that only
//! looks like a tag) is left untouched, so substitution never makes a script fail.

use std::collections::HashMap;

#[path = "octostache/filters.rs"]
pub mod filters;
#[path = "octostache/parse.rs"]
mod parse;

use parse::{Cond, Expr, Node, Operand, Piece, Symbol};

/// Variable lookup for substitution: exact name first, then case-insensitive (Octopus variable
/// names are case-insensitive). Keeps the order names were given in (for `#{each}`).
#[derive(Debug, Default, Clone)]
pub struct Variables<'a> {
    exact: HashMap<&'a str, &'a str>,
    folded: HashMap<String, &'a str>,
    ordered: Vec<&'a str>,
}

impl<'a> Variables<'a> {
    /// Build from `(name, value)` pairs; a later pair with the same name wins.
    pub fn new(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut v = Self::default();
        for (name, value) in pairs {
            if v.exact.insert(name, value).is_none() {
                v.ordered.push(name);
            }
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
    let nodes = parse::parse(text);
    let mut out = String::with_capacity(text.len());
    Eval {
        vars,
        frames: Vec::new(),
    }
    .render(&nodes, &mut out);
    out
}

/// Defined, non-empty, and not `0`, `False` or `No` (any case).
pub fn truthy(value: &str) -> bool {
    let v = value.trim();
    !(v.is_empty() || v == "0" || v.eq_ignore_ascii_case("false") || v.eq_ignore_ascii_case("no"))
}

/// The loop variables of the `#{each}` blocks being rendered, innermost last.
struct Frame {
    item: String,
    value: Item,
    index: usize,
    last: bool,
}

/// What a loop variable stands for.
enum Item {
    /// A key of an indexed collection: `prefix` is `Collection[key]`.
    Indexed { prefix: String, key: String },
    /// One of the comma-separated items of a value.
    Value(String),
}

struct Eval<'v, 'a> {
    vars: &'v Variables<'a>,
    frames: Vec<Frame>,
}

impl Eval<'_, '_> {
    fn render(&mut self, nodes: &[Node<'_>], out: &mut String) {
        for node in nodes {
            match node {
                Node::Text(t) => out.push_str(t),
                Node::Subst { raw, expr } => match expr.as_ref().and_then(|e| self.expr(e)) {
                    Some(value) => out.push_str(&value),
                    None => out.push_str(raw),
                },
                Node::If {
                    open,
                    unless,
                    cond,
                    then,
                    otherwise,
                    close,
                } => match cond.as_ref().map(|c| self.cond(c) != *unless) {
                    Some(true) => self.render(then, out),
                    Some(false) => {
                        if let Some((_, nodes)) = otherwise {
                            self.render(nodes, out);
                        }
                    }
                    None => {
                        // A condition we cannot evaluate: keep the tags, substitute inside.
                        out.push_str(open);
                        self.render(then, out);
                        if let Some((raw, nodes)) = otherwise {
                            out.push_str(raw);
                            self.render(nodes, out);
                        }
                        out.push_str(close);
                    }
                },
                Node::Each {
                    open,
                    each,
                    body,
                    close,
                } => match each {
                    Some(each) => {
                        let items = self.items(&each.collection);
                        let count = items.len();
                        for (index, value) in items.into_iter().enumerate() {
                            self.frames.push(Frame {
                                item: each.item.to_owned(),
                                value,
                                index,
                                last: index + 1 == count,
                            });
                            self.render(body, out);
                            self.frames.pop();
                        }
                    }
                    None => {
                        out.push_str(open);
                        self.render(body, out);
                        out.push_str(close);
                    }
                },
            }
        }
    }

    /// The value of an expression; `None` leaves its tag as written.
    fn expr(&self, expr: &Expr<'_>) -> Option<String> {
        let mut value = if expr.symbol.is_empty() {
            None
        } else {
            Some(self.symbol_value(&expr.symbol)?)
        };
        for filter in &expr.filters {
            let args = filter
                .args
                .iter()
                .map(|a| self.piece(a))
                .collect::<Option<Vec<_>>>()?;
            value = Some(filters::apply(filter.name, value.as_deref(), &args)?);
        }
        value
    }

    fn piece(&self, piece: &Piece<'_>) -> Option<String> {
        match piece {
            Piece::Lit(t) => Some((*t).to_owned()),
            Piece::Nested(e) => self.expr(e),
        }
    }

    /// The name a symbol spells, nested expressions evaluated.
    fn name(&self, symbol: &Symbol<'_>) -> Option<String> {
        symbol.iter().map(|p| self.piece(p)).collect()
    }

    fn symbol_value(&self, symbol: &Symbol<'_>) -> Option<String> {
        self.lookup(&self.name(symbol)?)
    }

    fn lookup(&self, name: &str) -> Option<String> {
        if let Some(frame) = self.frames.last() {
            let special = |suffix: &str| {
                name.eq_ignore_ascii_case(&format!("Octopus.Template.Each.{suffix}"))
            };
            if special("Index") {
                return Some(frame.index.to_string());
            }
            if special("First") {
                return Some(capitalised(frame.index == 0));
            }
            if special("Last") {
                return Some(capitalised(frame.last));
            }
        }
        for frame in self.frames.iter().rev() {
            if name.eq_ignore_ascii_case(&frame.item) {
                return Some(match &frame.value {
                    Item::Indexed { prefix, key } => {
                        self.vars.get(prefix).unwrap_or(key.as_str()).to_owned()
                    }
                    Item::Value(v) => v.clone(),
                });
            }
            if let Some(rest) =
                strip_prefix_folded(name, &frame.item).and_then(|r| r.strip_prefix('.'))
            {
                return match &frame.value {
                    Item::Indexed { prefix, key } => {
                        let full = format!("{prefix}.{rest}");
                        match self.vars.get(&full) {
                            Some(v) => Some(v.to_owned()),
                            None if rest.eq_ignore_ascii_case("Key") => Some(key.clone()),
                            None => None,
                        }
                    }
                    Item::Value(_) => None,
                };
            }
        }
        self.vars.get(name).map(str::to_owned)
    }

    /// The name `name` stands for outside the loops (`a.Roles` → `Octopus.Action[A].Roles`).
    fn absolute(&self, name: &str) -> String {
        for frame in self.frames.iter().rev() {
            if let (Some(rest), Item::Indexed { prefix, .. }) = (
                strip_prefix_folded(name, &frame.item).and_then(|r| r.strip_prefix('.')),
                &frame.value,
            ) {
                return format!("{prefix}.{rest}");
            }
        }
        name.to_owned()
    }

    /// What `#{each}` iterates over: the keys of an indexed collection, else the comma-separated
    /// items of the value.
    fn items(&self, collection: &Symbol<'_>) -> Vec<Item> {
        let Some(name) = self.name(collection) else {
            return Vec::new();
        };
        let absolute = self.absolute(&name);
        let mut keys: Vec<String> = Vec::new();
        for variable in &self.vars.ordered {
            if let Some(key) = index_key(variable, &absolute)
                && !keys.iter().any(|k| k == key)
            {
                keys.push(key.to_owned());
            }
        }
        if !keys.is_empty() {
            return keys
                .into_iter()
                .map(|key| Item::Indexed {
                    prefix: format!("{absolute}[{key}]"),
                    key,
                })
                .collect();
        }
        self.lookup(&name)
            .map(|value| {
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| Item::Value(s.to_owned()))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn cond(&self, cond: &Cond<'_>) -> bool {
        match cond {
            Cond::Truthy(symbol) => self.symbol_value(symbol).is_some_and(|v| truthy(&v)),
            Cond::Compare { left, equal, right } => {
                let left = self.symbol_value(left);
                let right = match right {
                    Operand::Literal(l) => Some((*l).to_owned()),
                    Operand::Symbol(s) => self.symbol_value(s),
                };
                (left == right) == *equal
            }
        }
    }
}

fn capitalised(b: bool) -> String {
    if b { "True" } else { "False" }.to_owned()
}

/// The rest of `name` after `prefix`, compared case-insensitively.
fn strip_prefix_folded<'n>(name: &'n str, prefix: &str) -> Option<&'n str> {
    let head = name.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &name[prefix.len()..])
}

/// `key` when `variable` is `collection[key]` or `collection[key].more` (brackets in the key
/// balanced, as in `Package[container[0]]`).
fn index_key<'n>(variable: &'n str, collection: &str) -> Option<&'n str> {
    let rest = strip_prefix_folded(variable, collection)?.strip_prefix('[')?;
    let mut depth = 1usize;
    for (i, b) in rest.bytes().enumerate() {
        match b {
            b'[' => depth += 1,
            b']' => {
                depth -= 1;
                if depth == 0 {
                    let after = &rest[i + 1..];
                    return (after.is_empty() || after.starts_with('.')).then(|| &rest[..i]);
                }
            }
            _ => {}
        }
    }
    None
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
        // HtmlEscape is supported since issue 10 (it used to stay as written).
        assert_eq!(sub("#{Id | HtmlEscape}", &vars), "Deployments-12");
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
        // `#{each}` over an undefined collection renders nothing (it used to stay as written,
        // before issue 10 added loops); a loop header that does not parse stays.
        assert_eq!(sub("#{each a in B}#{a}#{/each}", &vars), "");
        assert_eq!(
            sub("#{each a.b in B}#{X}#{/each}", &vars),
            "#{each a.b in B}1#{/each}"
        );
        // Unknown filters, and filters that cannot apply, leave the tag.
        assert_eq!(sub("#{X | ToBazooka 6}", &vars), "#{X | ToBazooka 6}");
        assert_eq!(sub("#{X | Substring 20}", &vars), "#{X | Substring 20}");
        assert_eq!(sub("#{ | Trim}", &vars), "#{ | Trim}");
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

    /// From Octostache's IterationFixture.
    #[test]
    fn iteration() {
        let actions = [
            ("Octopus.Action[Package A].Name", "A"),
            ("Octopus.Action[Package A].TargetRoles", "a,b"),
            ("Octopus.Action[Package B].Name", "B"),
            ("Octopus.Action[Package B].TargetRoles", "c"),
            ("Octopus.Action[].Name", "Z"),
            ("Octopus.Action[].TargetRoles", "y"),
        ];
        assert_eq!(
            sub("Ok#{each nothing in missing}#{nothing}#{/each}", &[]),
            "Ok"
        );
        assert_eq!(
            sub(
                "#{each a in Octopus.Action}#{a}-#{a.Name}#{/each}",
                &actions
            ),
            "Package A-APackage B-B-Z"
        );
        assert_eq!(
            sub(
                "#{  each  a  in  Octopus.Action  }#{ a }-#{a.Name}#{/each}",
                &actions
            ),
            "Package A-APackage B-B-Z"
        );
        assert_eq!(
            sub(
                "#{each a in Octopus.Action}#{each tr in a.TargetRoles}#{a.Name}#{tr}#{/each}#{/each}",
                &actions
            ),
            "AaAbBcZy"
        );
        assert_eq!(
            sub(
                "#{each a in Numbers}#{a} First:#{Octopus.Template.Each.First} Last:#{Octopus.Template.Each.Last} Index:#{Octopus.Template.Each.Index}, #{/each}",
                &[("Numbers", "A,B,C")]
            ),
            "A First:True Last:False Index:0, B First:False Last:False Index:1, C First:False Last:True Index:2, "
        );
        assert_eq!(
            sub(
                "#{each a in Octopus.Action.Package}#{a}: #{a.Name} #{/each}",
                &[
                    ("Octopus.Action.Package[container[0]].Name", "A"),
                    ("Octopus.Action.Package[container[1]].Name", "B"),
                ]
            ),
            "container[0]: A container[1]: B "
        );
        let keyed = [
            ("Simple[a]", "5"),
            ("Simple[b]", "7"),
            ("NoDirect[a].Name", "Alpha"),
            ("NoDirect[b].Name", "Beta"),
            ("Cert[a]", "Certificate-1"),
            ("Cert[a].Thumbprint", "AAA"),
            ("Cert[b]", "Certificate-2"),
            ("Cert[b].Thumbprint", "BBB"),
            ("Coll[a]", "val-a"),
            ("Coll[a].Key", "user-supplied"),
        ];
        assert_eq!(
            sub("#{each x in Simple}[#{x.Key}]#{/each}", &keyed),
            "[a][b]"
        );
        assert_eq!(
            sub("#{each x in NoDirect}[#{x.Key}]#{/each}", &keyed),
            "[a][b]"
        );
        assert_eq!(
            sub(
                "#{each x in Cert}[#{x.Key}=#{x.Thumbprint}]#{/each}",
                &keyed
            ),
            "[a=AAA][b=BBB]"
        );
        assert_eq!(sub("#{each x in Simple}[#{x}]#{/each}", &keyed), "[5][7]");
        assert_eq!(sub("#{each x in NoDirect}[#{x}]#{/each}", &keyed), "[a][b]");
        assert_eq!(
            sub("#{each x in Cert}[#{x}]#{/each}", &keyed),
            "[Certificate-1][Certificate-2]"
        );
        assert_eq!(
            sub("#{each x in Coll}[#{x.Key}]#{/each} #{Coll[a].Key}", &keyed),
            "[user-supplied] user-supplied"
        );
        // A scoped indexer with a nested expression.
        assert_eq!(
            sub(
                "#{each action in Octopus.Action}#{if Octopus.Step[#{action.StepName}].Status != \"Skipped\"}#{Octopus.Step[#{action.StepName}].Details}#{/if}#{/each}",
                &[
                    ("Octopus.Action[Action 1].StepName", "Step 1"),
                    ("Octopus.Action[Action 2].StepName", "Step 2"),
                    ("Octopus.Step[Step 1].Details", "Step 1 Details"),
                    ("Octopus.Step[Step 2].Details", "Step 2 Details"),
                    ("Octopus.Step[Step 1].Status", "Skipped"),
                    ("Octopus.Step[Step 2].Status", "Running"),
                ]
            ),
            "Step 2 Details"
        );
    }

    /// From Octostache's ConditionalsFixture.
    #[test]
    fn conditionals_compare_literals_and_variables() {
        let vars = [
            ("Result", "result"),
            ("ElseResult", "elseresult"),
            ("Truthy", "true"),
            ("Octopus", "octopus"),
            ("Compare", "octopus"),
            ("Fooey", "foo"),
            ("No", "no"),
        ];
        for template in [
            "#{ if Truthy}#{Result}#{/if}",
            "#{if Truthy }#{Result}#{/if}",
            "#{if  Truthy}#{ Result }#{/if}",
            "#{if Truthy  == \"true\"}#{Result}#{/if}",
            "#{if Truthy  != \"false\"}#{Result}#{/if}",
            "#{if Octopus == Compare}#{Result}#{/if}",
            "#{if Octopus == \"octopus\"}#{Result}#{/if}",
            "#{if Missing != \"software\"}#{Result}#{/if}",
            "#{if Truthy}#{if Fooey==\"foo\"}#{Result}#{/if}#{/if}",
            "#{if No}#{ElseResult}#{else}#{Result}#{/if}",
            "#{if Octopus != Compare}x#{else}#{if Fooey==\"foo\"}#{Result}#{/if}#{/if}",
        ] {
            assert_eq!(sub(template, &vars), "result", "{template}");
        }
    }

    /// From Octostache's FiltersFixture: filters with arguments, in a template.
    #[test]
    fn filters_with_arguments() {
        let vars = [
            ("foo", "abc"),
            ("regex", "b"),
            ("replacement", "x"),
            ("Long", "Octopus Deploy"),
            ("Url", "A b:c+d/e"),
        ];
        assert_eq!(sub("#{foo | Replace abc def}", &vars), "def");
        assert_eq!(sub("#{foo | Replace \"b\" \"d ef\"}", &vars), "ad efc");
        assert_eq!(sub("#{foo | Replace #{regex}#{replacement}}", &vars), "axc");
        assert_eq!(sub("#{foo | Replace}", &vars), "#{foo | Replace}");
        assert_eq!(sub("#{Long | Substring 8 | Trim}", &vars), "Octopus");
        assert_eq!(sub("#{Long | Truncate 7}", &vars), "Octopus...");
        assert_eq!(sub("#{Long|ToUpper|ToLower}", &vars), "octopus deploy");
        assert_eq!(sub("#{Url | UriEscape}", &vars), "A%20b:c+d/e");
        assert_eq!(sub("#{foo | tobase64 | FromBase64}", &vars), "abc");
        assert_eq!(sub("#{|Append foo}", &vars), "foo");
        assert_eq!(
            sub("#{foo | Append \" \" #{foo} \" \" value}", &vars),
            "abc abc value"
        );
        assert_eq!(sub("#{foo | Match #{regex}}", &vars), "true");
        let stamp = sub("#{ | NowDateUtc \"yyMMddHHmmss\"}", &[]);
        assert!(
            stamp.len() == 12 && stamp.bytes().all(|b| b.is_ascii_digit()),
            "{stamp}"
        );
    }

    #[test]
    fn system_variables_and_output_indexers() {
        let vars = [
            ("Octopus.Action.Name", "Deploy web"),
            ("Octopus.Deployment.Id", "Deployments-12"),
            ("Octopus.Action[Build].Output.Version", "1.2.3"),
        ];
        assert_eq!(
            sub(
                "#{Octopus.Action.Name}: #{Octopus.Deployment.Id | ToLower} #{Octopus.Action[Build].Output.Version}",
                &vars
            ),
            "Deploy web: deployments-12 1.2.3"
        );
    }
}
