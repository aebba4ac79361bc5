#!/usr/bin/env python3
"""Writes tests/fixtures/syntax-corpus.jsonl: tricky valid and invalid Python and JavaScript
snippets, each with the verdict of the language's reference implementation (CPython's compile(),
`node --check` on a .js file, i.e. CommonJS). The code pipeline's real parsers are tested against
these verdicts (tests/code_fixes.rs). Run from the repository root; needs python3 and node."""
import json, os, subprocess, sys, tempfile

PY = [
    # The issue's cases and their neighbours.
    "with open(path as f:\n    data = f.read()\n",
    "with open(path as f):\n    data = f.read()\n",
    "with open(path) as f:\n    data = f.read()\n",
    "print x\n",
    "print(x)\n",
    "d = (dx ** 2 + dy ** 2 ** 0.5)\n",
    "d = (dx ** 2 + dy ** 2) ** 0.5\n",
    # Colons.
    "def f(x)\n    return x\n",
    "def f(x):\n    return x\n",
    "if x = 1:\n    pass\n",
    "if x == 1:\n    pass\n",
    "if (n := 10) > 5:\n    pass\n",
    "class A\n    pass\n",
    "for i in range(3) # loop\n    print(i)\n",
    "for i in range(3):  # loop\n    print(i)\n",
    "while True:\r\n    break\r\n",
    "try:\n    pass\nexcept ValueError, TypeError:\n    pass\n",
    "try:\n    pass\nexcept (ValueError, TypeError):\n    pass\n",
    "match x:\n    case 1:\n        pass\n    case _:\n        pass\n",
    "lambda x: (yield x)\n",
    # Brackets.
    "x = [1, 2, 3\ny = 4\n",
    "x = [1, 2, 3]\ny = 4\n",
    "x = foo(1, (2, 3)\n",
    "x = {'a': 1, 'b': [2, 3}\n",
    "x = {'a': 1, 'b': [2, 3]}\n",
    "total = sum(x for x in range(10)\nprint(total)\n",
    "x = (1 +\n     2)\n",
    "x = 1 +\n    2\n",
    "x = [\n    1,\n    2,\n]\n",
    # Strings.
    "s = 'hello\n",
    "s = \"hello, \" + name\n",
    "s = \"hello, + name\n",
    "s = '''multi\nline'''\n",
    "s = '''never closed\n",
    "s = f'{x!r:>10}'\n",
    "s = f'{x'\n",
    "s = b'bytes' + 'str'\n",
    "s = rb'\\d+'\n",
    "s = 'a' 'b'\n",
    # Indentation.
    "def f():\nreturn 1\n",
    "def f():\n    x = 1\n      return x\n",
    "def f():\n    x = 1\n  return x\n",
    "if x:\n\tpass\n",
    "if x:\n    pass\n  else:\n    pass\n",
    "def f():\n    pass\n\n\n    # comment\nx = 1\n",
    # Expressions and statements.
    "x = 1 if y else\n",
    "x = 1 if y else 2\n",
    "f(**a, *b)\n",
    "f(*b, **a)\n",
    "f(a=1, 2)\n",
    "1 = x\n",
    "x, *y = z\n",
    "del f()\n",
    "async def f():\n    await g()\n",
    "def f(a, /, b, *, c):\n    pass\n",
    "x = not\n",
    "import a.b as c\n",
    "from . import (a, b,)\n",
    "from . import a, b,\n",
    "global x\n",
    "assert x, 'msg'\n",
    "x = [i for i in range(3) if i if i > 0]\n",
    "@decorator\ndef f():\n    pass\n",
    "@decorator\nx = 1\n",
]

JS = [
    # The issue's cases.
    "function greet(name) {\n  return \"hello, \" + name;\n\nconsole.log(greet(\"a\"));\n",
    "function greet(name) {\n  return \"hello, \" + name;\n}\nconsole.log(greet(\"a\"));\n",
    "const s = \"hello, + name;\n",
    "const s = \"hello, \" + name;\n",
    # Brackets and blocks.
    "function f( {\n}\n",
    "if (x) {\n  y();\n",
    "if (x) {\n  y();\n}\n",
    "const a = [1, 2, 3;\n",
    "const o = { a: 1, b: [2, 3] };\n",
    "const o = { a: 1, b: [2, 3 };\n",
    "call(a, b;\n",
    "const f = (a, b) => { return a + b; };\n",
    "const f = (a, b) => { return a + b; ;\n",
    # Strings and templates.
    "const t = `a${b}c`;\n",
    "const t = `a${b`;\n",
    "const t = `unterminated;\n",
    "const s = 'it\\'s';\n",
    "const s = 'it's';\n",
    "const r = /ab+c/gi;\n",
    "const r = /ab+c/gq;\n",
    # Declarations and early errors.
    "let a = 1;\nlet a = 2;\n",
    "var a = 1;\nvar a = 2;\n",
    "const c;\n",
    "return 1;\n",
    "break;\n",
    "for (;;) { break; }\n",
    "class A { constructor() {} constructor() {} }\n",
    "class A extends B { constructor() { super(); } }\n",
    "function f(a, a) {}\n",
    "'use strict';\nfunction f(a, a) {}\n",
    "async function f() { await g(); }\n",
    "function f() { await g(); }\n",
    "x = await g();\n",
    "label: for (;;) { continue label; }\n",
    "const {a, ...b} = o;\n",
    "const {a, ...b,} = o;\n",
    "a?.b?.(c);\n",
    "a ?? b || c;\n",
    "(a ?? b) || c;\n",
    "import x from 'y';\n",
    "export default 1;\n",
    "new.target;\n",
    "function f() { return new.target; }\n",
    "with (o) { x; }\n",
    "let let = 1;\n",
    "var let = 1;\n",
    "0777;\n",
    "'use strict'; 0777;\n",
    "x => { y }\n",
    "if (a) function f() {}\n",
    "obj = { get x() { return 1 }, set x(v) {} };\n",
    "obj = { get x(a) { return 1 } };\n",
    "#!/usr/bin/env node\nconsole.log(1);\n",
    "console.log(1)\n/* unterminated\n",
    "<!-- html comment\nconsole.log(1);\n",
]


def cpython(code):
    try:
        compile(code, "<corpus>", "exec")
        return True, ""
    except SyntaxError as e:  # IndentationError and TabError are SyntaxErrors
        return False, f"{type(e).__name__}: {e.msg}"


def node(code):
    with tempfile.NamedTemporaryFile("w", suffix=".js", delete=False) as f:
        f.write(code)
        path = f.name
    try:
        r = subprocess.run(["node", "--check", path], capture_output=True, text=True)
        err = next((l for l in r.stderr.splitlines() if "Error" in l), "")
        return r.returncode == 0, err.strip()
    finally:
        os.unlink(path)


def main():
    out = os.path.join("tests", "fixtures", "syntax-corpus.jsonl")
    nodev = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    pyv = "%d.%d" % sys.version_info[:2]
    with open(out, "w") as f:
        for code in PY:
            ok, why = cpython(code)
            f.write(json.dumps({"language": "python", "code": code, "valid": ok, "reference": f"CPython {pyv}", "error": why}) + "\n")
        for code in JS:
            ok, why = node(code)
            f.write(json.dumps({"language": "javascript", "code": code, "valid": ok, "reference": f"node {nodev} --check", "error": why}) + "\n")
    print(f"wrote {len(PY) + len(JS)} snippets to {out} (CPython {pyv}, node {nodev})")


if __name__ == "__main__":
    main()
