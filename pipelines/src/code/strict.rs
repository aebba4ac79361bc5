//! The real parsers a FIX is validated by. tree-sitter's grammars recover from errors and accept
//! more than the languages do (`with open(path as f):` parses for tree-sitter, CPython rejects it),
//! so tree-sitter only locates errors and proposes candidates; a fix is `validated` when the
//! language's own grammar accepts the whole fixed file: ruff's parser for Python (CPython's grammar,
//! hand-written to match it, checked against a target version) and oxc's for JavaScript (the
//! ECMAScript grammar and its early errors, as `node --check` applies them to a .js file).

use super::fix::Language;

/// The Python version the Python grammar is checked for (syntax newer than it is refused).
const PYTHON: ruff_python_ast::PythonVersion = ruff_python_ast::PythonVersion::PY312;

/// Which parser validated a fix, as written in the decision.
pub fn validator(language: Language) -> &'static str {
    match language {
        Language::Python => "ruff_python_parser 0.0.10 (Python 3.12 grammar)",
        Language::Javascript => "oxc_parser + oxc_semantic 0.146.0 (ECMAScript early errors, as node --check)",
    }
}

/// Ok if the language's own grammar accepts the whole of `code`; else the first error, one line.
pub fn check(language: Language, code: &str) -> Result<(), String> {
    match language {
        Language::Python => python(code),
        Language::Javascript => javascript(code),
    }
}

fn python(code: &str) -> Result<(), String> {
    use ruff_python_parser::{Mode, ParseOptions};
    let options = ParseOptions::from(Mode::Module).with_target_version(PYTHON);
    let parsed = ruff_python_parser::parse_unchecked(code, options);
    if let Some(e) = parsed.errors().first() {
        return Err(format!("{} (at byte {})", e.error, u32::from(e.location.start())));
    }
    if let Some(e) = parsed.unsupported_syntax_errors().first() {
        return Err(format!("{e} (at byte {})", u32::from(e.range.start())));
    }
    Ok(())
}

fn javascript(code: &str) -> Result<(), String> {
    // `node --check file.js` reads a .js file without "type": "module" as CommonJS (a script in
    // sloppy mode wrapped in a function, so a top-level `return` is allowed), and when that fails
    // on module syntax (import, export, top-level await) as an ES module.
    let script = parse_js(code, oxc_span::SourceType::cjs());
    if script.is_ok() || parse_js(code, oxc_span::SourceType::mjs()).is_ok() {
        return Ok(());
    }
    script
}

fn parse_js(code: &str, kind: oxc_span::SourceType) -> Result<(), String> {
    let allocator = oxc_allocator::Allocator::default();
    let ret = oxc_parser::Parser::new(&allocator, code, kind).parse();
    if let Some(e) = ret.diagnostics.first() {
        return Err(e.message.to_string());
    }
    if ret.panicked {
        return Err("the parser gave up".into());
    }
    // The early errors a parser defers (a `let` declared twice, `break` outside a loop, …).
    let semantic = oxc_semantic::SemanticBuilder::new().with_check_syntax_error(true).build(&ret.program);
    semantic.diagnostics.first().map_or(Ok(()), |e| Err(e.message.to_string()))
}

#[cfg(test)]
mod tests {
    use super::{Language, check};

    #[test]
    fn what_tree_sitter_accepts_and_the_languages_do_not() {
        // CPython: invalid syntax; tree-sitter's Python grammar recovers into a clean tree.
        assert!(check(Language::Python, "with open(path as f):\n    pass\n").is_err());
        assert!(check(Language::Python, "print x\n").is_err());
        assert!(check(Language::Python, "def f(:\n    pass\n").is_err());
        assert!(check(Language::Python, "with open(path) as f:\n    pass\n").is_ok());
        assert!(check(Language::Python, "x = (1 +\n     2)\n").is_ok());
        assert!(check(Language::Javascript, "function f( {\n}\n").is_err());
        assert!(check(Language::Javascript, "let a = 1;\nlet a = 2;\n").is_err());
        assert!(check(Language::Javascript, "return 1;\n").is_ok(), "CommonJS allows a top-level return");
        assert!(check(Language::Javascript, "const s = `a${b}c`;\nconsole.log(s);\n").is_ok());
    }
}
