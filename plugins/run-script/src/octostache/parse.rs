//! Octostache templates → a tree of nodes, apart from evaluation (no variables here).
//!
//! A tag is `#{…}` on one line, at most [`MAX_TAG_LEN`] bytes, and may hold nested tags
//! (`#{Octopus.Step[#{a.StepName}].Status}`, `#{X | Replace #{from} #{to}}`). `##{` is a literal
//! `#{`. Anything that does not parse — a tag that is not closed on its line, a block without its
//! end, an `else` outside a block — stays in the tree as its own text, so it is written back
//! unchanged.

/// The longest text between `#{` and `}` that can be an expression.
pub const MAX_TAG_LEN: usize = 512;

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub enum Node<'a> {
    /// Text written as it is.
    Text(&'a str),
    /// `#{Expression}`; `expr` is `None` when it does not parse (then `raw` is written).
    Subst {
        /// The tag as written.
        raw: &'a str,
        /// The expression.
        expr: Option<Expr<'a>>,
    },
    /// `#{if …}` / `#{unless …}` … `#{else}` … `#{/if}`.
    If {
        /// The opening tag as written.
        open: &'a str,
        /// `unless` rather than `if`.
        unless: bool,
        /// `None` when the condition does not parse (the tags are then written as they are).
        cond: Option<Cond<'a>>,
        /// What is inside before `#{else}`.
        then: Vec<Node<'a>>,
        /// `#{else}` as written and what follows it.
        otherwise: Option<(&'a str, Vec<Node<'a>>)>,
        /// The closing tag as written.
        close: &'a str,
    },
    /// `#{each item in Collection}` … `#{/each}`.
    Each {
        /// The opening tag as written.
        open: &'a str,
        /// `None` when the header does not parse.
        each: Option<Each<'a>>,
        /// The body.
        body: Vec<Node<'a>>,
        /// The closing tag as written.
        close: &'a str,
    },
}

/// A symbol (a variable name) that may contain nested tags: `Octopus.Step[#{a.StepName}].Status`.
pub type Symbol<'a> = Vec<Piece<'a>>;

/// Part of a symbol or a filter argument.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece<'a> {
    /// Literal text.
    Lit(&'a str),
    /// A nested `#{…}` expression.
    Nested(Expr<'a>),
}

/// `Symbol | Filter args… | …`; the symbol is empty in `#{ | NowDateUtc}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr<'a> {
    /// The variable, empty when the expression starts with a filter.
    pub symbol: Symbol<'a>,
    /// Filters applied in order.
    pub filters: Vec<FilterCall<'a>>,
}

/// One filter with its arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterCall<'a> {
    /// Its name as written (matched case-insensitively).
    pub name: &'a str,
    /// Its arguments: bare words, `"quoted text"` or nested tags.
    pub args: Vec<Piece<'a>>,
}

/// A condition of `if`/`unless`.
#[derive(Debug, Clone, PartialEq)]
pub enum Cond<'a> {
    /// The variable is defined and truthy.
    Truthy(Symbol<'a>),
    /// `Left == Right` (`equal`) or `Left != Right`.
    Compare {
        /// The variable on the left.
        left: Symbol<'a>,
        /// `==` rather than `!=`.
        equal: bool,
        /// A quoted literal or another variable.
        right: Operand<'a>,
    },
}

/// The right side of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand<'a> {
    /// `"text"`.
    Literal(&'a str),
    /// Another variable.
    Symbol(Symbol<'a>),
}

/// `each item in Collection`.
#[derive(Debug, Clone, PartialEq)]
pub struct Each<'a> {
    /// The loop variable.
    pub item: &'a str,
    /// What it iterates over.
    pub collection: Symbol<'a>,
}

/// Parses `text` into nodes.
pub fn parse(text: &str) -> Vec<Node<'_>> {
    build(tokenize(text))
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum BlockKind {
    If,
    Unless,
    Each,
}

#[derive(Debug)]
enum Token<'a> {
    Text(&'a str),
    Subst(&'a str, Option<Expr<'a>>),
    Open(&'a str, Opening<'a>),
    Else(&'a str),
    Close(&'a str, BlockKind),
}

#[derive(Debug)]
enum Opening<'a> {
    Cond(bool, Option<Cond<'a>>),
    Each(Option<Each<'a>>),
}

impl Opening<'_> {
    fn kind(&self) -> BlockKind {
        match self {
            Opening::Cond(false, _) => BlockKind::If,
            Opening::Cond(true, _) => BlockKind::Unless,
            Opening::Each(_) => BlockKind::Each,
        }
    }
}

/// The length of the tag starting at `start` (which is at `#{`), `}` included, if it is one.
fn tag_len(text: &str, start: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut i = start;
    while i < bytes.len() && i - start <= MAX_TAG_LEN + 2 {
        match bytes[i] {
            b'#' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 2;
                continue;
            }
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1 - start);
                }
            }
            b'{' | b'\n' | b'\r' => return None,
            _ => {}
        }
        i += 1;
    }
    None
}

fn tokenize(text: &str) -> Vec<Token<'_>> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i + 1 < bytes.len() {
        if bytes[i] == b'#' && bytes[i + 1] == b'#' && bytes.get(i + 2) == Some(&b'{') {
            // `##{` is an escaped `#{`.
            push_text(&mut tokens, &text[start..i]);
            push_text(&mut tokens, "#{");
            i += 3;
            start = i;
            continue;
        }
        if bytes[i] == b'#' && bytes[i + 1] == b'{' {
            if let Some(len) = tag_len(text, i) {
                push_text(&mut tokens, &text[start..i]);
                let raw = &text[i..i + len];
                tokens.push(classify(raw, &raw[2..len - 1]));
                i += len;
                start = i;
                continue;
            }
            i += 2;
            continue;
        }
        i += 1;
    }
    push_text(&mut tokens, &text[start..]);
    tokens
}

fn push_text<'a>(tokens: &mut Vec<Token<'a>>, text: &'a str) {
    if !text.is_empty() {
        tokens.push(Token::Text(text));
    }
}

fn classify<'a>(raw: &'a str, inner: &'a str) -> Token<'a> {
    let t = inner.trim();
    if let Some(rest) = keyword(t, "if") {
        return Token::Open(raw, Opening::Cond(false, parse_cond(rest)));
    }
    if let Some(rest) = keyword(t, "unless") {
        return Token::Open(raw, Opening::Cond(true, parse_cond(rest)));
    }
    if let Some(rest) = keyword(t, "each") {
        return Token::Open(raw, Opening::Each(parse_each(rest)));
    }
    match t {
        "else" => Token::Else(raw),
        "/if" => Token::Close(raw, BlockKind::If),
        "/unless" => Token::Close(raw, BlockKind::Unless),
        "/each" => Token::Close(raw, BlockKind::Each),
        _ => Token::Subst(raw, parse_expr(t)),
    }
}

/// `rest` when `t` is `word` followed by whitespace and more.
fn keyword<'a>(t: &'a str, word: &str) -> Option<&'a str> {
    let rest = t.strip_prefix(word)?;
    rest.starts_with(char::is_whitespace).then(|| rest.trim())
}

/// Byte offsets in `s` that are outside nested tags, brackets and double quotes.
fn top_level(s: &str) -> impl Iterator<Item = (usize, u8)> + '_ {
    let bytes = s.as_bytes();
    let (mut tags, mut brackets, mut quoted) = (0usize, 0usize, false);
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < bytes.len() {
            let (at, b) = (i, bytes[i]);
            i += 1;
            match b {
                b'#' if bytes.get(at + 1) == Some(&b'{') => {
                    tags += 1;
                    i += 1;
                }
                b'}' if tags > 0 => tags -= 1,
                _ if tags > 0 => {}
                b'"' => quoted = !quoted,
                _ if quoted => {}
                b'[' => brackets += 1,
                b']' if brackets > 0 => brackets -= 1,
                _ if brackets > 0 => {}
                _ => return Some((at, b)),
            }
        }
        None
    })
}

/// A symbol: a name, possibly with nested tags. `None` if it is not one.
fn parse_symbol(s: &str) -> Option<Symbol<'_>> {
    let s = s.trim();
    if s.is_empty() || s.starts_with('/') || top_level(s).any(|(_, b)| matches!(b, b'"' | b'|')) {
        return None;
    }
    if s.contains('"') {
        return None;
    }
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < s.len() {
        if s[i..].starts_with("#{") {
            let len = tag_len(s, i)?;
            if start < i {
                pieces.push(Piece::Lit(&s[start..i]));
            }
            pieces.push(Piece::Nested(parse_expr(s[i + 2..i + len - 1].trim())?));
            i += len;
            start = i;
            continue;
        }
        if matches!(s.as_bytes()[i], b'{' | b'}') {
            return None;
        }
        i += 1;
    }
    if start < s.len() {
        pieces.push(Piece::Lit(&s[start..]));
    }
    Some(pieces)
}

fn parse_expr(t: &str) -> Option<Expr<'_>> {
    let cuts: Vec<usize> = top_level(t)
        .filter(|&(_, b)| b == b'|')
        .map(|(at, _)| at)
        .collect();
    let mut parts = Vec::with_capacity(cuts.len() + 1);
    let mut start = 0;
    for cut in cuts {
        parts.push(&t[start..cut]);
        start = cut + 1;
    }
    parts.push(&t[start..]);
    let head = parts[0].trim();
    let symbol = if head.is_empty() && parts.len() > 1 {
        Vec::new()
    } else {
        parse_symbol(head)?
    };
    let filters = parts[1..]
        .iter()
        .map(|f| parse_filter(f.trim()))
        .collect::<Option<Vec<_>>>()?;
    Some(Expr { symbol, filters })
}

fn parse_filter(f: &str) -> Option<FilterCall<'_>> {
    let end = f
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(f.len());
    let name = &f[..end];
    if name.is_empty() {
        return None;
    }
    let rest = &f[end..];
    if !rest.is_empty() && !rest.starts_with(char::is_whitespace) {
        return None;
    }
    Some(FilterCall {
        name,
        args: parse_args(rest)?,
    })
}

/// Filter arguments: bare words, `"quoted text"`, `\"quoted text\"`, and nested tags (each its own
/// argument, so `#{a}#{b}` is two).
fn parse_args(s: &str) -> Option<Vec<Piece<'_>>> {
    let mut args = Vec::new();
    let mut i = 0;
    let bytes = s.as_bytes();
    while i < bytes.len() {
        if bytes[i].is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let rest = &s[i..];
        if let Some(quoted) = rest.strip_prefix("\\\"") {
            let end = quoted.find("\\\"")?;
            args.push(Piece::Lit(&quoted[..end]));
            i += 2 + end + 2;
        } else if let Some(quoted) = rest.strip_prefix('"') {
            let end = quoted.find('"')?;
            args.push(Piece::Lit(&quoted[..end]));
            i += 1 + end + 1;
        } else if rest.starts_with("#{") {
            let len = tag_len(s, i)?;
            args.push(Piece::Nested(parse_expr(s[i + 2..i + len - 1].trim())?));
            i += len;
        } else {
            let end = rest
                .find(|c: char| c.is_ascii_whitespace() || c == '"')
                .unwrap_or(rest.len());
            let end = rest[..end].find("#{").unwrap_or(end);
            args.push(Piece::Lit(&rest[..end]));
            i += end;
        }
    }
    Some(args)
}

fn parse_cond(rest: &str) -> Option<Cond<'_>> {
    let op = top_level(rest)
        .find(|&(at, b)| matches!(b, b'=' | b'!') && rest.as_bytes().get(at + 1) == Some(&b'='))
        .map(|(at, b)| (at, b == b'='));
    let Some((at, equal)) = op else {
        return Some(Cond::Truthy(parse_symbol(rest)?));
    };
    let left = parse_symbol(&rest[..at])?;
    let right = rest[at + 2..].trim();
    let right = match right.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        Some(literal) if !literal.contains('"') => Operand::Literal(literal),
        Some(_) => return None,
        None => Operand::Symbol(parse_symbol(right)?),
    };
    Some(Cond::Compare { left, equal, right })
}

fn parse_each(rest: &str) -> Option<Each<'_>> {
    let rest = rest.trim();
    let space = rest.find(char::is_whitespace)?;
    let item = &rest[..space];
    let after = rest[space..].trim_start().strip_prefix("in")?;
    if !after.starts_with(char::is_whitespace) || item.contains(['.', '[', '#', '"']) {
        return None;
    }
    Some(Each {
        item,
        collection: parse_symbol(after)?,
    })
}

/// An open block while building the tree.
struct Frame<'a> {
    open: &'a str,
    opening: Option<Opening<'a>>,
    nodes: Vec<Node<'a>>,
    otherwise: Option<(&'a str, Vec<Node<'a>>)>,
}

impl<'a> Frame<'a> {
    fn root() -> Self {
        Frame {
            open: "",
            opening: None,
            nodes: Vec::new(),
            otherwise: None,
        }
    }

    fn push(&mut self, node: Node<'a>) {
        match &mut self.otherwise {
            Some((_, nodes)) => nodes.push(node),
            None => self.nodes.push(node),
        }
    }

    /// A block that never closed: its tags are text, its content stays.
    fn unmatched(self, into: &mut Frame<'a>) {
        into.push(Node::Text(self.open));
        for node in self.nodes {
            into.push(node);
        }
        if let Some((raw, nodes)) = self.otherwise {
            into.push(Node::Text(raw));
            for node in nodes {
                into.push(node);
            }
        }
    }
}

fn build(tokens: Vec<Token<'_>>) -> Vec<Node<'_>> {
    let mut stack = vec![Frame::root()];
    for token in tokens {
        match token {
            Token::Text(t) => stack.last_mut().unwrap().push(Node::Text(t)),
            Token::Subst(raw, expr) => stack.last_mut().unwrap().push(Node::Subst { raw, expr }),
            Token::Open(open, opening) => stack.push(Frame {
                open,
                opening: Some(opening),
                nodes: Vec::new(),
                otherwise: None,
            }),
            Token::Else(raw) => {
                let top = stack.last_mut().unwrap();
                let in_condition = matches!(top.opening, Some(Opening::Cond(..)));
                if in_condition && top.otherwise.is_none() {
                    top.otherwise = Some((raw, Vec::new()));
                } else {
                    top.push(Node::Text(raw));
                }
            }
            Token::Close(close, kind) => {
                let found = stack
                    .iter()
                    .rposition(|f| f.opening.as_ref().is_some_and(|o| o.kind() == kind));
                let Some(pos) = found.filter(|&p| p > 0) else {
                    stack.last_mut().unwrap().push(Node::Text(close));
                    continue;
                };
                // Blocks opened above it never closed.
                while stack.len() > pos + 1 {
                    let frame = stack.pop().unwrap();
                    frame.unmatched(stack.last_mut().unwrap());
                }
                let frame = stack.pop().unwrap();
                let node = match frame.opening.expect("a block") {
                    Opening::Cond(unless, cond) => Node::If {
                        open: frame.open,
                        unless,
                        cond,
                        then: frame.nodes,
                        otherwise: frame.otherwise,
                        close,
                    },
                    Opening::Each(each) => Node::Each {
                        open: frame.open,
                        each,
                        body: frame.nodes,
                        close,
                    },
                };
                stack.last_mut().unwrap().push(node);
            }
        }
    }
    while stack.len() > 1 {
        let frame = stack.pop().unwrap();
        frame.unmatched(stack.last_mut().unwrap());
    }
    stack.pop().unwrap().nodes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(s: &str) -> Symbol<'_> {
        vec![Piece::Lit(s)]
    }

    #[test]
    fn text_and_substitutions() {
        assert_eq!(
            parse("a #{B} ##{C}"),
            [
                Node::Text("a "),
                Node::Subst {
                    raw: "#{B}",
                    expr: Some(Expr {
                        symbol: lit("B"),
                        filters: vec![]
                    })
                },
                Node::Text(" "),
                Node::Text("#{"),
                Node::Text("C}"),
            ]
        );
        assert_eq!(parse("#{\n}"), [Node::Text("#{\n}")]);
        assert_eq!(parse("#{a{b}"), [Node::Text("#{a{b}")]);
    }

    #[test]
    fn nested_tags_filters_and_arguments() {
        let nodes =
            parse("#{Octopus.Step[#{a.StepName}].Status | Replace \"x y\" #{to} z | ToUpper}");
        let Node::Subst {
            expr: Some(expr), ..
        } = &nodes[0]
        else {
            panic!("{nodes:?}");
        };
        assert_eq!(
            expr.symbol,
            [
                Piece::Lit("Octopus.Step["),
                Piece::Nested(Expr {
                    symbol: lit("a.StepName"),
                    filters: vec![]
                }),
                Piece::Lit("].Status"),
            ]
        );
        assert_eq!(expr.filters[0].name, "Replace");
        assert_eq!(
            expr.filters[0].args,
            [
                Piece::Lit("x y"),
                Piece::Nested(Expr {
                    symbol: lit("to"),
                    filters: vec![]
                }),
                Piece::Lit("z")
            ]
        );
        assert_eq!(expr.filters[1].name, "ToUpper");
        // `#{ | NowDateUtc}` has no symbol; `#{}` and `#{|}` are not expressions.
        assert!(
            matches!(&parse("#{ | NowDateUtc \"yy\"}")[0], Node::Subst { expr: Some(e), .. } if e.symbol.is_empty())
        );
        assert!(matches!(
            &parse("#{}")[0],
            Node::Text("#{}") | Node::Subst { expr: None, .. }
        ));
        assert!(matches!(
            &parse("#{ | }")[0],
            Node::Subst { expr: None, .. }
        ));
    }

    #[test]
    fn blocks_nest_and_unmatched_tags_are_text() {
        let nodes = parse("#{if A == \"x\"}1#{else}#{each i in L}#{i}#{/each}#{/if}");
        let Node::If {
            cond,
            then,
            otherwise,
            ..
        } = &nodes[0]
        else {
            panic!("{nodes:?}");
        };
        assert_eq!(
            cond,
            &Some(Cond::Compare {
                left: lit("A"),
                equal: true,
                right: Operand::Literal("x")
            })
        );
        assert_eq!(then, &[Node::Text("1")]);
        assert!(
            matches!(&otherwise.as_ref().unwrap().1[0], Node::Each { each: Some(e), .. } if e.item == "i")
        );

        assert_eq!(
            parse("#{if A != B}"),
            [Node::Text("#{if A != B}")],
            "never closed"
        );
        assert_eq!(parse("#{/each}"), [Node::Text("#{/each}")]);
        assert!(matches!(
            &parse("#{if A | ToLower}#{/if}")[0],
            Node::If { cond: None, .. }
        ));
        assert!(matches!(
            &parse("#{each in}#{/each}")[0],
            Node::Each { each: None, .. }
        ));
    }
}
