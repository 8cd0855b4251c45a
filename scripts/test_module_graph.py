#!/usr/bin/env python3
"""Tests of scripts/module-graph.py on tiny crates written to a temporary directory.

    python3 scripts/test_module_graph.py
"""

import importlib.util
import io
import os
import tempfile
import unittest
from contextlib import redirect_stdout

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("module_graph", os.path.join(HERE, "module-graph.py"))
mg = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mg)


def crate(files):
    """Writes {relative path: text} under a fresh src dir; returns its path."""
    root = tempfile.mkdtemp(prefix="module-graph-")
    src = os.path.join(root, "src")
    for rel, text in files.items():
        path = os.path.join(src, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    with open(os.path.join(root, "Cargo.toml"), "w", encoding="utf-8") as f:
        f.write('[package]\nname = "fixture"\n')
    return src


def edges(src):
    return set(mg.Crate(src).edges)


class Graph(unittest.TestCase):
    def test_use_lines_paths_and_groups(self):
        src = crate(
            {
                "lib.rs": "pub mod a;\npub mod b;\npub mod c;\npub mod d;\n",
                "a.rs": "use crate::{b, c::Thing};\nfn f() { crate::d::g(); }\n",
                "b.rs": "use crate::c::{self, X};\n",
                "c.rs": "pub struct Thing;\n",
                "d.rs": "pub fn g() {}\n",
            }
        )
        self.assertEqual(edges(src), {("a", "b"), ("a", "c"), ("a", "d"), ("b", "c")})

    def test_nested_groups_count_only_their_first_segment(self):
        src = crate(
            {
                "lib.rs": "mod a;\nmod b;\nmod c;\n",
                "a.rs": "use crate::{b::{x, y::c}, self};\n",
                "b.rs": "",
                "c.rs": "",
            }
        )
        # `c` inside b's group is b's item, not the module c; `self` is the crate root.
        self.assertEqual(edges(src), {("a", "b"), ("a", "crate")})

    def test_comments_strings_and_cfg_test_are_ignored(self):
        src = crate(
            {
                "lib.rs": "mod a;\nmod b;\n#[cfg(test)]\nmod tests;\n",
                "a.rs": (
                    "//! See [`crate::b`].\n"
                    "/* crate::b::x /* nested */ crate::b */\n"
                    'const S: &str = "crate::b::y";\n'
                    'const R: &str = r#"crate::b "quoted" "#;\n'
                    "const C: char = '\"'; fn l<'a>(x: &'a str) -> &'a str { x }\n"
                    "pub(crate) fn v() {}\n"
                    "#[cfg(test)]\nuse crate::b::Z;\n"
                    "#[cfg(test)]\nmod tests {\n    use crate::b;\n    fn t() { crate::b::f() }\n}\n"
                ),
                "b.rs": "use crate::a;\n#[cfg(test)]\n#[path = \"b_tests.rs\"]\nmod tests;\n",
                "b_tests.rs": "use crate::a;\n",
                "tests.rs": "use crate::a;\nuse crate::b;\n",
            }
        )
        self.assertEqual(edges(src), {("b", "a")})

    def test_super_paths_and_nested_files(self):
        src = crate(
            {
                "lib.rs": "pub mod a;\npub mod b;\n",
                "a/mod.rs": "mod inner;\nmod deep { use super::super::b::X; }\n",
                "a/inner.rs": "use super::super::b;\nuse super::Local;\n",
                "b.rs": "pub mod leaf;\n",
                "b/leaf.rs": "use super::Y;\n",
            }
        )
        self.assertEqual(edges(src), {("a", "b")})

    def test_root_items_and_visibility(self):
        src = crate(
            {
                "lib.rs": "pub mod a;\npub mod b;\npub use crate::b::Thing;\npub const LIMIT: u8 = 1;\n",
                "a.rs": "pub(in crate::b) fn f() {}\nfn g() -> u8 { crate::LIMIT }\n",
                "b.rs": "pub struct Thing;\n",
            }
        )
        self.assertEqual(edges(src), {("a", "crate"), ("crate", "b")})

    def test_cycles_are_reported_and_fail(self):
        src = crate(
            {
                "lib.rs": "mod a;\nmod b;\nmod c;\nmod leaf;\n",
                "a.rs": "use crate::b::X;\nuse crate::leaf;\n",
                "b.rs": "use crate::c::Y;\n",
                "c.rs": "fn f() { crate::a::g() }\n",
                "leaf.rs": "",
            }
        )
        self.assertEqual(mg.Crate(src).cycles(), [["a", "b", "c"]])
        out = io.StringIO()
        with redirect_stdout(out):
            code = mg.main([src])
        self.assertEqual(code, 1)
        self.assertIn("cycle: a , b , c", out.getvalue())
        self.assertIn("c -> a   (c.rs:1)", out.getvalue())

    def test_acyclic_passes_and_dot_draws_every_module(self):
        src = crate({"lib.rs": "mod a;\nmod b;\n", "a.rs": "use crate::b;\n", "b.rs": ""})
        out = io.StringIO()
        with redirect_stdout(out):
            self.assertEqual(mg.main([src]), 0)
            self.assertEqual(mg.main(["--dot", src]), 0)
        text = out.getvalue()
        self.assertIn("no cycles", text)
        self.assertIn('"fixture::a" -> "fixture::b";', text)
        self.assertIn('"fixture::b" [label="b"];', text)
        self.assertIn('{ rank=same; "fixture::b"; }', text)

    def test_levels_are_rows_from_the_leaves_up(self):
        src = crate(
            {
                "lib.rs": "mod a;\nmod b;\nmod c;\nmod d;\n",
                "a.rs": "use crate::b;\nuse crate::d;\n",
                "b.rs": "use crate::c;\n",
                "c.rs": "",
                "d.rs": "",
            }
        )
        self.assertEqual(mg.Crate(src).levels(), [["c", "d"], ["b"], ["a"]])
        cyclic = crate({"lib.rs": "mod a;\nmod b;\n", "a.rs": "use crate::b;\n", "b.rs": "use crate::a;\n"})
        self.assertEqual(mg.Crate(cyclic).levels(), [])

    def test_several_dirs_fail_if_any_has_a_cycle(self):
        good = crate({"lib.rs": "mod a;\n", "a.rs": ""})
        bad = crate({"lib.rs": "mod a;\nmod b;\n", "a.rs": "use crate::b;\n", "b.rs": "use crate::a;\n"})
        with redirect_stdout(io.StringIO()):
            self.assertEqual(mg.main([good, bad]), 1)
            self.assertEqual(mg.main([good, good]), 0)

    def test_a_declared_module_without_its_file_is_an_error(self):
        src = crate({"lib.rs": "mod missing;\n"})
        with self.assertRaises(SystemExit):
            mg.Crate(src)


if __name__ == "__main__":
    unittest.main()
