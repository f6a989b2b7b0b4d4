"""Syntax check for Swift files without a Swift toolchain: parses each file
with tree-sitter-swift and fails on any ERROR or MISSING node.

Two valid constructs in uniffi's generated Swift that the grammar does not
know are blanked out first (same length, so reported positions stay
right): the underscored attribute `@_documentation(visibility: ...)`, and
a closure whose body is the empty tuple, `{ () }`.

Usage: check_swift_syntax.py FILE... ; --expect-error FILE checks that the
checker does flag a broken file.
"""

import re
import sys

import tree_sitter_swift
from tree_sitter import Language, Parser

GRAMMAR_GAPS = re.compile(rb"@_documentation\(visibility:\s*\w+\)|(?<=\{ )\(\)(?= \})")


def problems(path):
    with open(path, "rb") as f:
        source = GRAMMAR_GAPS.sub(lambda m: b" " * len(m.group(0)), f.read())
    tree = Parser(Language(tree_sitter_swift.language())).parse(source)
    found = []
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.is_error or node.is_missing:
            row, column = node.start_point
            kind = "missing " + node.type if node.is_missing else "syntax error"
            found.append(f"{path}:{row + 1}:{column + 1}: {kind}")
        elif node.has_error:
            stack.extend(node.children)
    return found


def main(args):
    if args[:1] == ["--expect-error"]:
        if not problems(args[1]):
            print(f"the checker missed the error in {args[1]}", file=sys.stderr)
            return 1
        return 0
    failed = False
    for path in args:
        for line in problems(path):
            print(line, file=sys.stderr)
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
