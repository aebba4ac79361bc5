//! Syntax errors found by tree-sitter and fixed by rules. Every fixer proposes candidate edits of
//! one line; a candidate is kept only if the whole file then parses without an error, so a fix is
//! never emitted that does not parse. Fixers are hand-written: what they repair (a missing colon,
//! an unclosed bracket or string, a stray indent) is a one-token edit no crate offers, while
//! parsing and diffing use tree-sitter and `similar`.

use serde::{Deserialize, Serialize};
use tree_sitter::{InputEdit, Node, Parser, Point, Tree};

/// A language the parser knows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    /// Python 3.
    #[default]
    Python,
    /// JavaScript.
    Javascript,
}

impl Language {
    /// Parses a language name (`python`, `py`, `javascript`, `js`).
    pub fn from_name(name: &str) -> Option<Language> {
        match name.to_ascii_lowercase().as_str() {
            "python" | "py" => Some(Language::Python),
            "javascript" | "js" => Some(Language::Javascript),
            _ => None,
        }
    }

    fn parse(self, code: &str) -> Option<Tree> {
        self.reparse(code, None)
    }

    /// Parses `code`; with `old`, the tree of a text `code` was edited from (already told about
    /// the edit), tree-sitter reuses what the edit did not touch.
    fn reparse(self, code: &str, old: Option<&Tree>) -> Option<Tree> {
        thread_local! {
            // A parser per thread and language: building one costs more than parsing a snippet,
            // and the fixers parse every candidate.
            static PARSERS: std::cell::RefCell<[Option<Parser>; 2]> = const { std::cell::RefCell::new([None, None]) };
        }
        PARSERS.with(|parsers| {
            let mut parsers = parsers.borrow_mut();
            let slot = &mut parsers[self as usize];
            if slot.is_none() {
                let language = match self {
                    Language::Python => tree_sitter_python::LANGUAGE,
                    Language::Javascript => tree_sitter_javascript::LANGUAGE,
                };
                let mut parser = Parser::new();
                parser.set_language(&language.into()).ok()?;
                *slot = Some(parser);
            }
            slot.as_mut()?.parse(code, old)
        })
    }
}

/// A syntax error the parser found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// 1-based line.
    pub line: usize,
    /// 0-based column (bytes).
    pub column: usize,
    /// `error` (unexpected text) or `missing X` (a token the grammar expected).
    pub problem: String,
    /// The innermost named construct around it (`for_statement`, `function_definition`, …).
    pub construct: Option<String>,
}

/// What a fix repaired.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FixKind {
    /// A block header without its `:` (Python).
    MissingColon,
    /// A bracket opened and not closed on its line, or closed without being opened.
    UnbalancedBracket,
    /// A string literal without its closing quote.
    UnclosedString,
    /// A line indented differently from its block (Python).
    Indentation,
}

/// Where and how a fixer changed the line: with the kind, what confidence is calibrated by
/// (see [`super::calibration`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    /// The missing token added at the line's end (before a comment, a trailing `:`/`;` or closers).
    LineEnd,
    /// A string closed at the line's end over text that reads as code (`"hello, + name"`).
    OverCode,
    /// The missing token inserted right after a word inside the line.
    AfterWord,
    /// A closer that nothing opened, removed.
    Dropped,
    /// A closer on a line of its own where the block ends (by indentation).
    BlockEnd,
    /// The line indented to another level.
    Reindented,
}

impl Placement {
    /// How the placement reads in a reason or a table.
    pub fn describe(self) -> &'static str {
        match self {
            Placement::LineEnd => "at the line's end",
            Placement::OverCode => "at the line's end, over text that reads as code",
            Placement::AfterWord => "after a word inside the line",
            Placement::Dropped => "by removing a closer nothing opened",
            Placement::BlockEnd => "on its own line where the block ends",
            Placement::Reindented => "by re-indenting the line",
        }
    }
}

/// A validated fix.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fix {
    /// What was repaired.
    pub kind: FixKind,
    /// How.
    pub placement: Placement,
    /// The 1-based line changed (for a closer on a line of its own, that line).
    pub line: usize,
    /// The 1-based line of the given code the edit replaced (for a closer on a new line, the line
    /// it follows): what calibration compares with the reported line.
    pub edited: usize,
    /// The whole fixed code (it parses).
    pub code: String,
}

/// One candidate edit: line `line` (0-based) replaced by `text`, which may hold a newline (a line
/// inserted after it).
struct Edit {
    line: usize,
    text: String,
    placement: Placement,
}

impl Edit {
    fn new(line: usize, text: String, placement: Placement) -> Edit {
        Edit { line, text, placement }
    }
}

/// Syntax errors in `code`, in source order (empty if it parses).
pub fn findings(language: Language, code: &str) -> Vec<Finding> {
    language.parse(code).map(|tree| findings_in(language, &tree)).unwrap_or_default()
}

fn findings_in(language: Language, tree: &Tree) -> Vec<Finding> {
    let mut out = Vec::new();
    collect(tree.root_node(), &mut out);
    if language == Language::Python {
        indentation_findings(tree, &mut out);
        out.sort_by_key(|f| (f.line, f.column));
    }
    out
}

/// Python's own indentation rules, which tree-sitter's grammar does not enforce (it accepts a
/// stray indent or a dedent to no enclosing level): the statements of a block start in one column,
/// deeper than the statement that owns the block, and module-level statements in column 0.
/// Hand-written because no crate checks Python indentation; comments are exempt, as in Python.
/// One cursor walks the whole tree (a cursor per node and `Node::parent`, which searches from the
/// root, made this walk cost a third of a parse; it runs on every candidate fix).
fn indentation_findings(tree: &Tree, out: &mut Vec<Finding>) {
    let mut cursor = tree.walk();
    let mut frames: Vec<Frame<'_>> = Vec::new();
    // The nodes above the cursor (a block's owner is the top one when the block is reached).
    let mut above: Vec<Node<'_>> = Vec::new();
    loop {
        let node = cursor.node();
        let depth = above.len();
        if let Some(frame) = frames.last_mut().filter(|f| f.depth + 1 == depth && node.is_named()) {
            frame.statement(node, out);
        }
        let kind = node.kind();
        if kind == "block" || kind == "module" {
            let owner = above.last().copied();
            frames.push(Frame { depth, block: kind == "block", owner, column: None, last_row: None });
        }
        if cursor.goto_first_child() {
            above.push(node);
            continue;
        }
        // Leave finished nodes until one has a next sibling.
        loop {
            if frames.last().is_some_and(|f| f.depth == above.len()) {
                frames.pop().into_iter().for_each(|f| f.finish(out));
            }
            if cursor.goto_next_sibling() {
                break;
            }
            if !cursor.goto_parent() {
                return;
            }
            above.pop();
        }
    }
}

/// A block (or the module) being walked: its direct named children are its statements.
struct Frame<'t> {
    /// The block node's depth in the tree.
    depth: usize,
    /// A block (false: the module).
    block: bool,
    /// The statement that owns the block.
    owner: Option<Node<'t>>,
    /// The column of its first statement.
    column: Option<usize>,
    /// The row of the last child seen (later children on that row are not statements of their own).
    last_row: Option<usize>,
}

impl Frame<'_> {
    /// Checks one statement against the block's column (the first statement's).
    fn statement(&mut self, child: Node<'_>, out: &mut Vec<Finding>) {
        let start = child.start_position();
        let first_on_row = self.last_row != Some(start.row);
        self.last_row = Some(start.row);
        if child.kind() == "comment" || !first_on_row {
            return;
        }
        let owner = self.owner.map(|o| o.start_position());
        let problem = match (self.block, self.column, owner) {
            (false, _, _) if start.column != 0 => Some("unexpected indent"),
            (_, Some(c), _) if start.column != c => Some("indentation does not match the block"),
            (_, None, Some(o)) if o.row != start.row && start.column <= o.column => Some("expected an indented block"),
            _ => None,
        };
        if let Some(problem) = problem {
            let construct = Some(child.kind().to_owned());
            out.push(Finding { line: start.row + 1, column: start.column, problem: problem.to_owned(), construct });
        }
        self.column.get_or_insert(start.column);
    }

    /// At the block's end: a block without any statement means its owner expected an indented
    /// block on the next line.
    fn finish(self, out: &mut Vec<Finding>) {
        if let (None, true, Some(o)) = (self.column, self.block, self.owner) {
            let at = o.start_position();
            let problem = "expected an indented block".to_owned();
            out.push(Finding { line: at.row + 2, column: at.column, problem, construct: Some(o.kind().to_owned()) });
        }
    }
}

fn collect(node: Node<'_>, out: &mut Vec<Finding>) {
    if !node.has_error() {
        return;
    }
    if node.is_error() || node.is_missing() {
        let start = node.start_position();
        let construct = std::iter::successors(node.parent(), |n| n.parent())
            .find(|n| {
                n.is_named() && !n.is_error() && n.kind() != "block" && n.kind() != "module" && n.kind() != "program"
            })
            .map(|n| n.kind().to_owned());
        let problem = if node.is_missing() { format!("missing {}", node.kind()) } else { "error".to_owned() };
        out.push(Finding { line: start.row + 1, column: start.column, problem, construct });
        if node.is_missing() {
            return;
        }
    }
    let mut cursor = node.walk();
    for child in node.children(&mut cursor) {
        collect(child, out);
    }
}

/// Does `code` parse: without an error for tree-sitter (for Python: and with valid indentation),
/// and accepted by the language's own grammar ([`super::strict`])?
pub fn parses(language: Language, code: &str) -> bool {
    language.parse(code).is_some_and(|tree| clean(language, &tree)) && super::strict::check(language, code).is_ok()
}

/// A tree without syntax errors (for Python: and with valid indentation).
fn clean(language: Language, tree: &Tree) -> bool {
    if tree.root_node().has_error() {
        return false;
    }
    let mut indentation = Vec::new();
    if language == Language::Python {
        indentation_findings(tree, &mut indentation);
    }
    indentation.is_empty()
}

/// A unified diff from `before` to `after`, with `name` in the headers.
pub fn diff(name: &str, before: &str, after: &str) -> String {
    similar::TextDiff::from_lines(before, after)
        .unified_diff()
        .header(&format!("a/{name}"), &format!("b/{name}"))
        .to_string()
}

/// The first rule-based fix that makes `code` parse, trying the reported error line first, then
/// where the parser found errors, then their neighbours. None if no rule helps (or it parses).
pub fn propose(language: Language, code: &str, error_line: Option<usize>) -> Option<Fix> {
    analyse(language, code, error_line, None).1
}

impl FixKind {
    /// The fix an error message points at, as CPython and V8 word them ("expected ':'",
    /// "unterminated string literal", "'(' was never closed", "unexpected indent", …).
    pub fn hinted_by(error_type: &str, message: &str) -> Option<FixKind> {
        let m = message.to_ascii_lowercase();
        if error_type == "IndentationError" || error_type == "TabError" || m.contains("indent") {
            Some(FixKind::Indentation)
        } else if m.contains("expected ':'") {
            Some(FixKind::MissingColon)
        } else if m.contains("unterminated string")
            || m.contains("eol while scanning")
            || m.contains("invalid or unexpected token")
        {
            Some(FixKind::UnclosedString)
        } else if ["never closed", "unmatched", "does not match", "missing )", "missing ]", "missing }", "end of input"]
            .iter()
            .any(|p| m.contains(p))
        {
            Some(FixKind::UnbalancedBracket)
        } else {
            None
        }
    }
}

/// [`findings`] and [`propose`] from one parse of `code`; `hint` (see [`FixKind::hinted_by`]) is
/// the fixer tried first on the reported line — it only orders the attempts, every fix is still
/// validated by parsing.
pub fn analyse(
    language: Language,
    code: &str,
    error_line: Option<usize>,
    hint: Option<FixKind>,
) -> (Vec<Finding>, Option<Fix>) {
    let Some(tree) = language.parse(code) else { return (Vec::new(), None) };
    let found = findings_in(language, &tree);
    if found.is_empty() {
        return (found, None);
    }
    let fix = fix_in(language, code, &tree, &found, error_line, hint);
    (found, fix)
}

fn fix_in(
    language: Language,
    code: &str,
    tree: &Tree,
    found: &[Finding],
    error_line: Option<usize>,
    hint: Option<FixKind>,
) -> Option<Fix> {
    let lines: Vec<&str> = code.split('\n').collect();
    let mut starts = Vec::with_capacity(lines.len());
    let mut at = 0;
    for line in &lines {
        starts.push(at);
        at += line.len() + 1;
    }
    let mut candidates: Vec<usize> = Vec::new();
    for line in error_line.into_iter().chain(found.iter().map(|f| f.line)) {
        for l in [line, line.saturating_sub(1), line + 1] {
            if (1..=lines.len()).contains(&l) && !candidates.contains(&l) {
                candidates.push(l);
            }
        }
    }
    // The reported line first, with every fixer, then the lines the parser points at: most errors
    // are where they are reported, and each failed candidate costs a parse with error recovery.
    let mut kinds =
        vec![FixKind::MissingColon, FixKind::UnclosedString, FixKind::UnbalancedBracket, FixKind::Indentation];
    if let Some(first) = hint {
        kinds.retain(|k| *k != first);
        kinds.insert(0, first);
    }
    let mut attempts = 0;
    // Fixers that place a closer where a block ends propose the same edit from several lines.
    let mut tried: std::collections::HashSet<(usize, String)> = std::collections::HashSet::new();
    for &line in &candidates {
        for &kind in &kinds {
            for Edit { line: i, text: edit, placement } in edits(language, kind, &lines, line - 1) {
                if !tried.insert((i, edit.clone())) {
                    continue;
                }
                // Each candidate costs a parse: bound the search (what the rules cannot fix in
                // this many tries goes to the LLM, if configured).
                attempts += 1;
                if attempts > MAX_ATTEMPTS {
                    return None;
                }
                let fixed = format!("{}{edit}{}", &code[..starts[i]], &code[starts[i] + lines[i].len()..]);
                // Re-parse only around the edited line.
                let added = edit.matches('\n').count();
                let last = edit.rsplit('\n').next().map_or(0, str::len);
                let mut old = tree.clone();
                old.edit(&InputEdit {
                    start_byte: starts[i],
                    old_end_byte: starts[i] + lines[i].len(),
                    new_end_byte: starts[i] + edit.len(),
                    start_position: Point::new(i, 0),
                    old_end_position: Point::new(i, lines[i].len()),
                    new_end_position: Point::new(i + added, last),
                });
                // tree-sitter's grammar recovers more than the language does: the candidate must
                // also pass the real parser.
                if language.reparse(&fixed, Some(&old)).is_some_and(|t| clean(language, &t))
                    && super::strict::check(language, &fixed).is_ok()
                {
                    return Some(Fix { kind, placement, line: i + 1 + added, edited: i + 1, code: fixed });
                }
            }
        }
    }
    None
}

/// Candidate edits tried per event at most.
const MAX_ATTEMPTS: usize = 16;

/// Candidate edits by the fixer of `kind` for an error at line `i` (most replace line `i`; a
/// closer placed where a block ends may go elsewhere).
fn edits(language: Language, kind: FixKind, lines: &[&str], i: usize) -> Vec<Edit> {
    let line = lines[i];
    let here = |(text, placement)| Edit::new(i, text, placement);
    match (kind, language) {
        (FixKind::MissingColon, Language::Python) => {
            missing_colon(line).into_iter().map(|t| Edit::new(i, t, Placement::LineEnd)).collect()
        }
        (FixKind::UnclosedString, _) => unclosed_string(line).into_iter().map(here).collect(),
        (FixKind::UnbalancedBracket, _) => {
            let mut out: Vec<Edit> = unbalanced_bracket(line).into_iter().map(here).collect();
            out.extend(unclosed_block(language, lines, i));
            out
        }
        (FixKind::Indentation, Language::Python) => {
            indentation(lines, i).into_iter().map(|t| Edit::new(i, t, Placement::Reindented)).collect()
        }
        _ => Vec::new(),
    }
}

const BLOCK_KEYWORDS: [&str; 13] =
    ["if", "elif", "else", "for", "while", "def", "class", "try", "except", "finally", "with", "async", "match"];

fn missing_colon(line: &str) -> Option<String> {
    let code = strip_comment(line).trim_end();
    let first = code.trim_start().split(|c: char| !c.is_alphanumeric() && c != '_').next()?;
    if !BLOCK_KEYWORDS.contains(&first) || code.ends_with(':') {
        return None;
    }
    Some(format!("{code}:{}", &line[code.len()..]))
}

/// Walks a line as code: yields the characters outside string literals (backslash escapes
/// respected) and before a `#` comment; afterwards says where the comment started and which quote,
/// if any, the line ends inside of. The one place that knows how strings and comments look.
struct Scan<'a> {
    chars: std::str::CharIndices<'a>,
    quote: Option<char>,
    escaped: bool,
    comment_at: Option<usize>,
}

fn scan(line: &str) -> Scan<'_> {
    Scan { chars: line.char_indices(), quote: None, escaped: false, comment_at: None }
}

impl Iterator for Scan<'_> {
    type Item = (usize, char);

    fn next(&mut self) -> Option<(usize, char)> {
        if self.comment_at.is_some() {
            return None;
        }
        for (i, c) in self.chars.by_ref() {
            if let Some(q) = self.quote {
                if self.escaped {
                    self.escaped = false;
                } else if c == '\\' {
                    self.escaped = true;
                } else if c == q {
                    self.quote = None;
                }
                continue;
            }
            match c {
                '"' | '\'' | '`' => self.quote = Some(c),
                '#' => {
                    self.comment_at = Some(i);
                    return None;
                }
                _ => return Some((i, c)),
            }
        }
        None
    }
}

/// The line without a trailing `#` comment (a `#` inside a string does not count).
fn strip_comment(line: &str) -> &str {
    let mut s = scan(line);
    s.by_ref().for_each(drop);
    s.comment_at.map_or(line, |i| &line[..i])
}

/// The quote a line ends inside of, if any.
fn open_quote(line: &str) -> Option<char> {
    let mut s = scan(line);
    s.by_ref().for_each(drop);
    s.quote
}

/// Byte positions after `from` where a word ends: where a token that lost its closer may end.
fn word_ends(line: &str, from: usize) -> Vec<usize> {
    let word = |c: char| c.is_alphanumeric() || c == '_';
    let chars: Vec<(usize, char)> = line.char_indices().filter(|(i, _)| *i > from).collect();
    let mut ends = Vec::new();
    for (k, &(i, c)) in chars.iter().enumerate() {
        let next = chars.get(k + 1).map(|&(_, n)| n);
        if word(c) && !next.is_some_and(word) {
            ends.push(i + c.len_utf8());
        }
    }
    ends
}

/// `line` with `text` inserted at each of `positions`.
fn insertions(line: &str, text: char, positions: Vec<usize>) -> impl Iterator<Item = String> + '_ {
    positions.into_iter().map(move |p| format!("{}{text}{}", &line[..p], &line[p..]))
}

fn unclosed_string(line: &str) -> Vec<(String, Placement)> {
    let Some(q) = open_quote(line) else { return Vec::new() };
    let body = line.trim_end();
    let head = body.trim_end_matches([')', ']', '}', ':', ';', ',']);
    let opened = line.rfind(q).unwrap_or(0);
    // Close it before the trailing closers (`print("hi)` → `print("hi")`), before each of them in
    // turn (`print(f'{err})` → `print(f'{err}')`), or at the end; or right after a word inside it
    // (`'items: x` → `'items': x`), first word first.
    let ends = (head.len()..=body.len()).chain(word_ends(line, opened).into_iter().filter(|&p| p < head.len()));
    let mut out: Vec<(String, Placement)> = ends
        .map(|p| {
            let placement = match p {
                _ if reads_as_code(&line[opened + 1..p]) => Placement::OverCode,
                _ if p >= head.len() => Placement::LineEnd,
                _ => Placement::AfterWord,
            };
            (format!("{}{q}{}", &line[..p], &line[p..]), placement)
        })
        .collect();
    // Closing over code is the last resort: the quote more likely belonged after a word.
    out.sort_by_key(|(_, p)| *p == Placement::OverCode);
    out.dedup();
    out
}

/// Text a string closed at the line's end would swallow that reads as code rather than prose: an
/// operator joining it to a name (`"hello, + name`) or a trailing comma (`"port: 8080,`), where
/// the quote more likely belonged earlier.
fn reads_as_code(text: &str) -> bool {
    ["+", "==", "!=", "&&", "||"].iter().any(|op| text.contains(op)) || text.trim_end().ends_with(',')
}

fn unbalanced_bracket(line: &str) -> Vec<(String, Placement)> {
    let mut stack = Vec::new();
    for (i, c) in scan(line) {
        match c {
            '(' | '[' | '{' => stack.push((i, c)),
            ')' | ']' | '}' => match stack.last() {
                Some(&(_, o)) if closer(o) == c => {
                    stack.pop();
                }
                // A closer opening the line closes a block of an earlier line (`} catch (e {`).
                _ if stack.is_empty() && line[..i].trim().is_empty() => {}
                // A closer nothing opened: drop it.
                _ => return vec![(format!("{}{}", &line[..i], &line[i + 1..]), Placement::Dropped)],
            },
            _ => {}
        }
    }
    let body = strip_comment(line).trim_end();
    // A `{` ending the line opens a block closed on a later line: not this line's business.
    if stack.last().is_some_and(|&(at, c)| c == '{' && at + 1 == body.len()) {
        stack.pop();
    }
    if stack.is_empty() {
        return Vec::new();
    }
    let closers: String = stack.iter().rev().map(|&(_, o)| closer(o)).collect();
    let head = body.trim_end_matches([':', ';', '{']).trim_end();
    let mut out = vec![
        (format!("{head}{closers}{}", &line[head.len()..]), Placement::LineEnd),
        (format!("{body}{closers}{}", &line[body.len()..]), Placement::LineEnd),
    ];
    // Or right after a word following the innermost opener (`len(items > 10` → `len(items) > 10`).
    if let (Some(&(at, _)), Some(close)) = (stack.last(), closers.chars().next()) {
        out.extend(insertions(line, close, word_ends(line, at)).map(|t| (t, Placement::AfterWord)));
    }
    out.dedup();
    out
}

/// The bracket that closes `open`.
fn closer(open: char) -> char {
    match open {
        '(' => ')',
        '[' => ']',
        _ => '}',
    }
}

/// The opening brackets no closer matched, over the lines (line index, column, bracket).
fn unmatched(lines: &[&str]) -> Vec<(usize, char)> {
    let mut stack = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        for (_, c) in scan(line) {
            match c {
                '(' | '[' | '{' => stack.push((n, c)),
                ')' | ']' | '}' => {
                    stack.pop();
                }
                _ => {}
            }
        }
    }
    stack
}

/// A block closer that went missing on another line than its opener (`}` on a line of its own),
/// placed where the block ends at the opener's indent, so what follows the block stays outside it.
/// The block is found by indentation: a line ending in an opener whose block (the lines after it
/// indented deeper) is not followed by a line starting with the closer. Failing that (code not
/// indented by its blocks), the innermost bracket still open where line `i` starts.
fn unclosed_block(language: Language, lines: &[&str], i: usize) -> Vec<Edit> {
    let has_text = |j: &usize| !lines[*j].trim().is_empty();
    // The first line after `opener` with text at its indent or less: where its block ends.
    let end_of = |opener: usize| {
        let depth = indent_of(lines[opener]);
        (opener + 1..lines.len()).filter(has_text).find(|&j| indent_of(lines[j]) <= depth)
    };
    let unclosed = (0..lines.len()).filter_map(|o| {
        let open = strip_comment(lines[o]).trim_end().chars().last().filter(|c| matches!(c, '(' | '[' | '{'))?;
        let closed = end_of(o).is_some_and(|e| {
            indent_of(lines[e]) == indent_of(lines[o]) && lines[e].trim_start().starts_with(closer(open))
        });
        (!closed && open_quote(lines[o]).is_none()).then_some((o, open))
    });
    // Two such blocks at most (a closer indented off its opener's column looks unclosed too).
    let blocks: Vec<(usize, char)> = unclosed.take(2).chain(unmatched(&lines[..i]).last().copied()).collect();
    let mut out = Vec::new();
    for (opener, open) in blocks {
        out.extend(close_block(language, lines, opener, open, end_of(opener)));
    }
    out
}

/// Edits that close the block opened by `open` on line `opener`, which ends before line `end`.
fn close_block(language: Language, lines: &[&str], opener: usize, open: char, end: Option<usize>) -> Vec<Edit> {
    let has_text = |j: &usize| !lines[*j].trim().is_empty();
    let close = closer(open);
    let pad = &lines[opener][..indent_of(lines[opener])];
    let last = (opener..end.unwrap_or(lines.len())).rev().find(has_text).unwrap_or(opener);
    // The closer goes on a new line after the block's last line, or takes the blank line there
    // (its own line, emptied), but never the empty text after the file's final newline. Blank
    // lines up to the usual separator (one in JavaScript, two in Python) are more likely a
    // separator, kept; one more, a blank holding spaces or blanks up to the end more likely the
    // closer's line.
    let mut out = vec![Edit::new(last, format!("{}\n{pad}{close}", lines[last]), Placement::BlockEnd)];
    let blank = |j: usize| lines.get(j).is_some_and(|l| l.trim().is_empty());
    if blank(last + 1) && (last + 2 < lines.len() || !lines[last + 1].is_empty()) {
        let take = Edit::new(last + 1, format!("{pad}{close}"), Placement::BlockEnd);
        let run = (last + 1..lines.len()).take_while(|&j| blank(j)).count();
        let separator = if language == Language::Python { 2 } else { 1 };
        // Blank lines that run to the end separate nothing.
        if !lines[last + 1].is_empty() || run > separator || last + 1 + run == lines.len() {
            out.insert(0, take);
        } else {
            out.push(take);
        }
    }
    out
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

fn indentation(lines: &[&str], i: usize) -> Vec<String> {
    let line = lines[i];
    if line.trim().is_empty() {
        return Vec::new();
    }
    let previous = lines[..i].iter().rev().find(|l| !l.trim().is_empty());
    let mut levels = Vec::new();
    if let Some(p) = previous {
        let base = indent_of(p);
        if strip_comment(p).trim_end().ends_with(':') {
            levels.push(base + 4);
        }
        levels.push(base);
        // Dedents to every enclosing level above.
        let mut level = base;
        for l in lines[..i].iter().rev().filter(|l| !l.trim().is_empty()) {
            if indent_of(l) < level {
                level = indent_of(l);
                levels.push(level);
            }
        }
    } else {
        levels.push(0);
    }
    levels.dedup();
    levels
        .into_iter()
        .filter(|&n| n != indent_of(line))
        .map(|n| format!("{}{}", " ".repeat(n), line.trim_start()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = "\ndef calculate_total(prices):\n    total = 0\n    for price in prices\n        total += price\n    return total\n    ";

    #[test]
    fn the_specification_example_gets_its_colon_back() {
        assert!(!parses(Language::Python, SPEC));
        let found = findings(Language::Python, SPEC);
        assert!(found.iter().any(|f| f.line == 4), "{found:?}");
        let fix = propose(Language::Python, SPEC, Some(4)).unwrap();
        assert_eq!(fix.kind, FixKind::MissingColon);
        assert_eq!(fix.line, 4);
        assert!(fix.code.contains("    for price in prices:\n"));
        assert!(parses(Language::Python, &fix.code));
        let d = diff("calc.py", SPEC, &fix.code);
        assert!(d.contains("-    for price in prices\n+    for price in prices:\n"), "{d}");
    }

    #[test]
    fn valid_code_needs_no_fix_and_hopeless_code_gets_none() {
        assert_eq!(propose(Language::Python, "x = 1\n", Some(1)), None);
        assert!(findings(Language::Python, "x = 1\n").is_empty());
        assert_eq!(propose(Language::Python, "def def def\n))) ((( :::\n", Some(1)), None);
    }

    #[test]
    fn javascript_brackets_and_strings() {
        let code = "function f(a) {\n  console.log(\"hi);\n  return a;\n}\n";
        let fix = propose(Language::Javascript, code, Some(2)).unwrap();
        assert_eq!(fix.kind, FixKind::UnclosedString);
        assert!(fix.code.contains("console.log(\"hi\");"), "{}", fix.code);
        let code = "function f(a) {\n  return g(a, 1;\n}\n";
        let fix = propose(Language::Javascript, code, Some(2)).unwrap();
        assert_eq!(fix.kind, FixKind::UnbalancedBracket);
        assert!(fix.code.contains("return g(a, 1);"), "{}", fix.code);
    }

    #[test]
    fn language_names() {
        assert_eq!(Language::from_name("PY"), Some(Language::Python));
        assert_eq!(Language::from_name("js"), Some(Language::Javascript));
        assert_eq!(Language::from_name("cobol"), None);
    }
}
