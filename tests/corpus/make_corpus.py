#!/usr/bin/env python3
"""Regenerates lossc's adversarial corpus (deterministic; run from anywhere):

    /work/venv/bin/python tests/corpus/make_corpus.py

Writes bad_sources/, ok_sources/, bad_data/ and ok_data/ next to this script (every file they
hold is generated here; old files are removed first). bad_args.txt and README.md are written by
hand. Needs numpy (for the .npz files); the stdlib sources are read from ../../stdlib.

Every file in bad_sources/ must make `lossc check FILE` exit 1 with an `error...` message;
every file in bad_data/, named `<stdlib loss>__<what>.<ext>`, must make
`lossc eval <loss> --inputs FILE` exit 1; ok_sources/ and ok_data/ must be accepted (exit 0).
"""

import io
import json
import random
import shutil
import struct
import zipfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
STDLIB = HERE.parent.parent / "stdlib"


def stdlib_source(name):
    return next(STDLIB.rglob(f"{name}.loss")).read_text()


DPO = stdlib_source("dpo")
CE = stdlib_source("cross_entropy")
MS = stdlib_source("multi_similarity")
MSM = stdlib_source("multi_similarity_mined")


def reset(sub):
    d = HERE / sub
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    return d


def put(d, name, content):
    if isinstance(content, str):
        content = content.encode("utf-8")
    (d / name).write_bytes(content)


# A small valid loss that the checking-error sources below start from.
HEAD = "loss l(x: [B, D], y: int[B], m: bool[B], s: []; beta = 0.1) {\n"


def body(*lines):
    """A loss over x: [B, D], y: int[B], m: bool[B], s: [] whose body is `lines`."""
    return HEAD + "".join(f"    {l}\n" for l in lines) + "}\n"


# ---------------------------------------------------------------------------------------------
# bad_sources: each must make `lossc check FILE` exit 1.
# ---------------------------------------------------------------------------------------------


def bad_sources():
    d = reset("bad_sources")
    ok = reset("ok_sources")
    rng = random.Random(1234)

    # -- bytes, encodings, junk --
    put(d, "garbage_bytes.loss", bytes(rng.randrange(256) for _ in range(4096)))
    put(d, "garbage_ascii.loss", "".join(chr(rng.randrange(33, 127)) for _ in range(2000)))
    put(d, "non_utf8_in_comment.loss", b"// caf\xe9\n" + DPO.encode())
    put(d, "non_utf8_identifier.loss", b"loss caf\xe9(x: [B]) { mean[b](x[b]) }\n")
    put(d, "utf16le.loss", DPO.encode("utf-16-le"))
    put(d, "lone_surrogate_cesu.loss", b"loss a(x: [B]) { mean[b](x[b]) } // \xed\xa0\x80\n")
    put(d, "nul_byte.loss", "loss a(x: [B]) { mean[b](x[b])\x00 }\n")
    put(d, "nul_only.loss", b"\x00" * 64)
    put(d, "bom_then_loss.loss", "\ufeff" + DPO)
    put(d, "control_chars.loss", "loss a(x: [B]) {\x07 mean[b](x[b]\x1b[31m) }\n")
    put(d, "form_feed_and_vt.loss", "loss a(x: [B])\x0c{\x0b mean[b](x[b]) }\n")
    put(d, "junk_semicolons.loss", ";;;\n")
    put(d, "junk_close_brace.loss", "}\n")
    put(d, "junk_open_brace.loss", "{")
    put(d, "junk_lone_loss_keyword.loss", "loss")
    put(d, "junk_lone_fn_keyword.loss", "fn")
    put(d, "junk_doc_comment_then_junk.loss", "/// doc\n@@@\n")
    put(d, "crlf_with_error.loss", "loss a(x: [B]) {\r\n    let t[b] = x[b] +\r\n}\r\n")
    put(d, "crlf_check_error.loss", "loss a(x: [B]) {\r\n    mean[b](x[c])\r\n}\r\n")
    put(d, "cr_only_line_endings.loss", "loss a(x: [B]) {\r    mean[b](x[c])\r}\r")

    # -- truncated stdlib files (cut inside the loss, never inside the doc comment) --
    for name, text in [("dpo", DPO), ("cross_entropy", CE), ("multi_similarity", MS), ("multi_similarity_mined", MSM)]:
        start = text.index("\nloss ") + 1
        n = len(text) - start
        for frac in (0.05, 0.3, 0.5, 0.8):
            cut = start + int(n * frac)
            put(d, f"truncated_{name}_{int(frac * 100)}pct.loss", text[:cut])
        put(d, f"truncated_{name}_last_brace.loss", text.rstrip()[:-1])

    # -- brackets --
    put(d, "unbalanced_paren_open.loss", "loss a(x: [B]) { mean[b]((x[b]) }\n")
    put(d, "unbalanced_paren_close.loss", "loss a(x: [B]) { mean[b](x[b])) }\n")
    put(d, "unbalanced_bracket.loss", "loss a(x: [B]) { mean[b](x[b) }\n")
    put(d, "mismatched_brackets.loss", "loss a(x: [B]) { mean[b)(x[b]] }\n")
    put(d, "missing_close_brace.loss", "loss a(x: [B]) {\n    mean[b](x[b])\n")
    put(d, "extra_close_brace.loss", "loss a(x: [B]) { mean[b](x[b]) } }\n")
    put(d, "parens_300_open_only.loss", "loss a(x: [B]) { " + "(" * 300 + "mean[b](x[b]) }\n")

    # -- numbers --
    put(d, "int_literal_too_large.loss", "loss a(x: [B]) { mean[b](x[b]) + 99999999999999999999999 }\n")
    put(d, "index_literal_too_large.loss", "loss a(x: [B]) { x[99999999999999999999999] }\n")
    put(d, "float_literal_overflows.loss", "loss a(x: [B]) { mean[b](x[b]) * 1e999 }\n")
    put(d, "hyper_default_overflows.loss", "loss a(x: [B]; k = 1e400) { k * mean[b](x[b]) }\n")
    put(d, "number_10k_digits_overflows.loss", "loss a(x: [B]) { mean[b](x[b]) + " + "9" * 10000 + ".0 }\n")
    put(d, "exponent_without_digits.loss", "loss a(x: [B]) { mean[b](x[b]) * 1e }\n")
    put(d, "two_dots.loss", "loss a(x: [B]) { mean[b](x[b]) * 1.2.3 }\n")
    put(d, "hex_literal.loss", "loss a(x: [B]) { mean[b](x[b]) * 0x10 }\n")
    put(d, "nan_literal.loss", "loss a(x: [B]) { mean[b](x[b]) * nan }\n")

    # -- size and depth --
    put(d, "chain_20000_plus.loss", "loss a(x: [B]) { " + "+".join(["1"] * 20000) + " }\n")
    put(d, "neg_prefix_2000.loss", "loss a(x: [B]) { " + "-" * 2000 + "mean[b](x[b]) }\n")
    put(d, "not_prefix_2000.loss", "loss a(x: [B]) { if " + "!" * 2000 + "true then 1 else 0 }\n")
    put(d, "if_chain_5000.loss", "loss a(x: [B]) { " + "if true then 1 else " * 5000 + "0 }\n")
    put(d, "pow_chain_5000.loss", "loss a(x: [B]; k = 1) { " + "^".join(["k"] * 5000) + " }\n")
    put(d, "parens_5000.loss", "loss a(x: [B]) { " + "(" * 5000 + "1" + ")" * 5000 + " }\n")
    put(d, "reductions_nested_2000.loss",
        "loss a(x: [B]) { " + "sum[b](" * 2000 + "x[b]" + ")" * 2000 + " }\n")
    put(d, "calls_nested_2000.loss", "loss a(x: [B]) { " + "exp(" * 2000 + "1" + ")" * 2000 + " }\n")
    put(d, "index_nested_2000.loss",
        "loss a(x: [B], y: int[B]) { mean[b](x[" + "y[" * 2000 + "b" + "]" * 2000 + "]) }\n")
    put(d, "long_line_then_error.loss", "loss a(x: [B]) { mean[b](x[b])" + " " * 200000 + "@ }\n")
    put(d, "identifier_100k_undefined.loss", "loss a(x: [B]) { mean[b](x[b]) + " + "q" * 100000 + " }\n")
    put(d, "identifiers_100k_near_miss.loss",
        f"loss a(x: [B]; {'k' * 100000}a = 1) {{ mean[b](x[b]) * {'k' * 100000}b }}\n")
    put(d, "inputs_5000_one_undefined.loss",
        "loss a(" + ", ".join(f"x{i}: [B]" for i in range(5000)) + ") { mean[b](x5000[b]) }\n")
    put(d, "errors_3000_items.loss", "".join(f"loss a{i}(x: [B]) {{ mean[b](x[c]) }}\n" for i in range(3000)))
    put(d, "parse_errors_3000_items.loss", "".join(f"loss a{i}(x: [B]) {{ mean[b](x[b]) + }}\n" for i in range(3000)))

    # Deep but legal nesting: lossc may accept these (then they belong in ok_sources).
    put(ok, "parens_300.loss", "loss a(x: [B]) { " + "(" * 300 + "mean[b](x[b])" + ")" * 300 + " }\n")
    put(ok, "neg_prefix_200.loss", "loss a(x: [B]) { " + "-" * 200 + "mean[b](x[b]) }\n")
    put(ok, "chain_500_plus.loss", "loss a(x: [B]) { mean[b](x[b]) + " + "+".join(["1"] * 500) + " }\n")
    put(ok, "if_chain_200.loss", "loss a(x: [B]) { " + "if mean[b](x[b]) > 0 then 1 else " * 200 + "0 }\n")
    put(ok, "pow_chain_300.loss", "loss a(x: [B]; k = 1) { mean[b](x[b]) * " + "^".join(["k"] * 300) + " }\n")
    put(ok, "reductions_nested_100.loss",
        "loss a(x: [B]) { " + "".join(f"sum[i{i}: B](" for i in range(100)) + "x[i99]" + ")" * 100 + " }\n")
    put(ok, "gathers_nested_100.loss",
        "loss a(x: [B], y: int[B]) { mean[b](x[" + "y[" * 100 + "b" + "]" * 100 + "]) }\n")
    put(ok, "fn_chain_30.loss",
        "fn f0(x) = x + 1\n" + "".join(f"fn f{i}(x) = f{i - 1}(x) * 2\n" for i in range(1, 31))
        + "loss a(x: [B]) { mean[b](f30(x[b])) }\n")
    put(ok, "unicode_in_comments_and_docs.loss", "/// Привет, 世界 — β·m\n// ünïcödé\n" + DPO.split("\n", 8)[-1])
    put(ok, "crlf_valid.loss", DPO.replace("\n", "\r\n"))
    put(ok, "only_comments.loss", "// nothing here\n/// nor here\n")

    # -- unicode --
    put(d, "unicode_loss_name.loss", "loss café(x: [B]) { mean[b](x[b]) }\n")
    put(d, "unicode_greek_let.loss", "loss a(x: [B]) {\n    let β = 0.1\n    β * mean[b](x[b])\n}\n")
    put(d, "unicode_index_var.loss", "loss a(x: [B]) { mean[ί](x[ί]) }\n")
    put(d, "unicode_fullwidth_parens.loss", "loss a（x: [B]） { mean[b](x[b]) }\n")
    put(d, "unicode_minus_sign.loss", "loss a(x: [B]) { mean[b](x[b]) − 1 }\n")
    put(d, "unicode_rtl_override.loss", "loss a(x: [B]) { mean[b](x[b]) \u202e+ 1 }\n")
    put(d, "unicode_emoji_identifier.loss", "loss a(x: [B]) { mean[b](x[b]) * \U0001f525 }\n")
    put(d, "unicode_combining_mark.loss", "loss a(x: [B]) { mean[b](x\u0301[b]) }\n")

    # -- items --
    put(d, "fn_only_no_body.loss", "fn f(x) =\n")
    put(d, "loss_without_result.loss", "loss a(x: [B]) {\n    let t[b] = x[b]\n}\n")
    put(d, "loss_metric_only.loss", "loss a(x: [B]) {\n    metric m = mean[b](x[b])\n}\n")
    put(d, "duplicate_loss_names.loss", "loss a(x: [B]) { mean[b](x[b]) }\nloss a(x: [B]) { sum[b](x[b]) }\n")
    put(d, "duplicate_input.loss", "loss a(x: [B], x: [B]) { mean[b](x[b]) }\n")
    put(d, "duplicate_hyper.loss", "loss a(x: [B]; k = 1, k = 2) { k * mean[b](x[b]) }\n")
    put(d, "input_and_hyper_same_name.loss", "loss a(x: [B]; x = 1) { mean[b](x[b]) }\n")
    put(d, "duplicate_let.loss", body("let t = 1", "let t = 2", "t"))
    put(d, "let_shadows_input.loss", body("let x = 1", "x"))
    put(d, "duplicate_metric.loss", body("metric q = 1", "metric q = 2", "s"))
    put(d, "fn_and_loss_same_name.loss", "fn a(x) = x\nloss a(x: [B]) { mean[b](x[b]) }\n")
    put(d, "fn_duplicate_param.loss", "fn f(x, x) = x\nloss a(x: [B]) { mean[b](f(x[b], 1)) }\n")
    put(d, "keyword_as_name.loss", "loss let(x: [B]) { mean[b](x[b]) }\n")
    put(d, "keyword_as_input.loss", "loss a(if: [B]) { mean[b](if[b]) }\n")
    put(ok, "square_input_same_dim_twice.loss", "loss a(x: [B, B]) { mean[b](x[b, b]) }\n")
    put(d, "hyper_non_number.loss", "loss a(x: [B]; k = beta) { mean[b](x[b]) }\n")
    put(d, "hyper_expression.loss", "loss a(x: [B]; k = 1 + 1) { mean[b](x[b]) }\n")
    put(d, "bad_elem_type.loss", "loss a(x: double[B]) { mean[b](x[b]) }\n")
    put(d, "dims_are_numbers.loss", "loss a(x: [4]) { mean[b](x[b]) }\n")

    # -- indices: every misuse --
    put(d, "index_unbound.loss", body("mean[b](x[b, e])"))
    put(d, "index_too_few.loss", body("mean[b](x[b])"))
    put(d, "index_too_many.loss", body("sum[b, d](x[b, d, d])"))
    put(d, "index_scalar_input.loss", body("mean[b](s[b])"))
    put(d, "index_hyper.loss", body("mean[b](beta[b])"))
    put(d, "index_let_scalar.loss", body("let t = 1", "mean[b](t[b])"))
    put(d, "index_let_wrong_arity.loss", body("let t[b] = y[b]", "mean[b, d](t[b, d])"))
    put(d, "index_one_var_two_dims.loss", body("sum[i](x[i, i])"))
    put(d, "index_one_var_two_dims_across_reads.loss", body("sum[i](x[i, 0] * x[0, i])"))
    put(d, "index_float_gather.loss", body("mean[b](x[b, x[b, 0]])"))
    put(d, "index_bool_gather.loss", body("mean[b](x[b, m[b]])"))
    put(d, "index_float_literal.loss", body("mean[b](x[b, 0.5])"))
    put(d, "index_negative_literal.loss", body("mean[b](x[b, -1])"))
    put(d, "index_arithmetic.loss", body("mean[b](x[b + 1, 0])"))
    put(d, "index_hyper_as_index.loss", body("mean[b](x[b, beta])"))
    put(d, "index_bool_literal.loss", body("mean[b](x[b, true])"))
    put(d, "index_inf.loss", body("mean[b](x[b, inf])"))
    put(d, "index_call.loss", body("mean[b](x[b, abs(1)])"))
    put(d, "index_reduction_as_index.loss", body("mean[b](x[b, count[c: D | true]()])"))
    put(d, "index_input_name_as_var.loss", body("mean[b](x[b, y])"))
    put(d, "index_gather_wrong_dim_var.loss", body("mean[b](x[b, y[d]])"))
    put(d, "index_free_in_scalar_let.loss", body("let t = x[b, 0]", "t"))
    put(d, "index_free_in_result.loss", body("x[b, 0]"))
    put(d, "index_free_in_metric.loss", body("metric q = y[b]", "s"))
    put(d, "index_let_params_duplicate.loss", body("let t[i, i] = x[i, i]", "sum[i](t[i, i])"))
    put(d, "index_let_param_unused_no_range.loss", body("let t[k] = 1", "sum[k](t[k])"))
    put(d, "index_reduction_rebinds_free.loss", body("let t[b] = sum[b](y[b])", "mean[b](t[b])"))
    put(d, "index_reduction_rebinds_outer.loss", body("sum[b](sum[b](x[b, 0]))"))
    put(d, "index_reduction_var_repeated.loss", body("sum[b, b](x[b, 0])"))
    put(d, "index_no_range.loss", body("sum[k](1)"))
    put(d, "index_annotation_unknown_dim.loss", body("sum[k: Z](1)"))
    put(d, "index_annotation_conflicts.loss", body("sum[k: D](x[k, 0])"))
    put(d, "index_annotation_is_input.loss", body("sum[k: x](1)"))
    put(d, "index_let_annotation_unknown_dim.loss", body("let t[k: Q] = 1", "sum[k](t[k])"))
    put(d, "index_dim_name_as_value.loss", body("mean[b](x[b, 0]) * B"))
    put(ok, "index_var_named_like_dim.loss", body("sum[B](x[B, 0]) + sum[D](x[0, D])"))
    put(d, "index_gather_of_float_let.loss", body("let t[b: B] = 0.5", "mean[b](x[b, t[b]])"))
    put(ok, "gather_through_int_let.loss", body("let t[b] = y[b]", "mean[b](x[b, t[b]])"))
    put(d, "index_gather_of_hyper_expr.loss", body("mean[b](x[b, y[b] + 1])"))
    put(d, "index_dim_of_other_loss.loss", "loss g(z: [K]) { sum[k](z[k]) }\n" + body("sum[k: K](1)"))
    put(d, "index_empty_brackets.loss", body("mean[b](x[])"))
    put(d, "index_read_function.loss", body("mean[b](exp[b])"))
    put(d, "index_read_in_fn.loss", "fn f(v) = v[0]\n" + body("mean[b](f(x[b, 0]))"))
    put(d, "index_free_in_fn.loss", "fn f(v) = v + x[b, 0]\n" + body("mean[b](f(x[b, 0]))"))

    # -- types --
    put(d, "type_bool_as_number.loss", body("mean[b](m[b]) + 1"))
    put(d, "type_number_as_condition.loss", body("if 1 then s else 0"))
    put(d, "type_if_branches_differ.loss", body("mean[b](if m[b] then true else 1)"))
    put(d, "type_comparison_chain.loss", body("if 1 < 2 < 3 then 1 else 0"))
    put(d, "type_bool_result.loss", body("s > 0"))
    put(d, "type_bool_metric.loss", body("metric q = s > 0", "s"))
    put(d, "type_filter_not_bool.loss", body("sum[b | x[b, 0]](1)"))
    put(d, "type_not_on_number.loss", body("if !s then 1 else 0"))
    put(d, "type_and_on_numbers.loss", body("if s && 1 then 1 else 0"))
    put(d, "type_neg_on_bool.loss", body("mean[b](-m[b])"))
    put(d, "type_bool_eq_number.loss", body("mean[b](if m[b] == 1 then 1 else 0)"))
    put(d, "type_count_with_body.loss", body("count[b](x[b, 0])"))
    put(d, "type_sum_without_body.loss", body("sum[b]()"))
    put(d, "type_reduction_no_vars.loss", body("sum[](1)"))
    put(d, "type_hyper_is_let_target.loss", body("let beta = 2", "beta"))

    # -- calls and fns --
    put(d, "call_unknown.loss", body("mean[b](expp(x[b, 0]))"))
    put(d, "call_builtin_too_many_args.loss", body("mean[b](exp(x[b, 0], 1))"))
    put(d, "call_builtin_too_few_args.loss", body("mean[b](clamp(x[b, 0]))"))
    put(d, "call_builtin_no_args.loss", body("mean[b](exp())"))
    put(d, "call_fn_wrong_arity.loss", "fn f(a, b) = a * b\n" + body("mean[b](f(x[b, 0]))"))
    put(d, "call_reduction_as_function.loss", body("sum(1, 2)"))
    put(d, "call_tensor_as_function.loss", body("x(1)"))
    put(d, "call_loss_as_function.loss", "loss g(x: [B]) { mean[b](x[b]) }\n" + body("g(1)"))
    put(d, "call_fn_bool_arg_to_math.loss", "fn f(a) = exp(a)\n" + body("mean[b](f(m[b]))"))
    put(d, "fn_recursive.loss", "fn f(x) = f(x) + 1\n" + body("mean[b](f(x[b, 0]))"))
    put(d, "fn_mutually_recursive.loss", "fn f(x) = g(x)\nfn g(x) = f(x)\n" + body("mean[b](f(x[b, 0]))"))
    put(d, "fn_recursive_3_cycle_unused.loss", "fn f(x) = g(x)\nfn g(x) = h(x)\nfn h(x) = f(x)\n" + body("s"))
    put(d, "fn_reduction_in_body.loss", "fn f(v) = sum[b](v)\n" + body("mean[b](f(x[b, 0]))"))
    put(d, "fn_unknown_name_in_body.loss", "fn f(v) = v + w\n" + body("mean[b](f(x[b, 0]))"))
    put(d, "fn_uses_hyper.loss", "fn f(v) = v * beta\n" + body("mean[b](f(x[b, 0]))"))
    put(d, "fn_chain_40_deep.loss",
        "fn f0(x) = x + 1\n" + "".join(f"fn f{i}(x) = f{i - 1}(x) * 2\n" for i in range(1, 41))
        + body("mean[b](f40(x[b, 0]))"))
    # The explosion: f_k(x) = f_{k-1}(x) + f_{k-1}(x) inlines 2^k copies of f0.
    put(d, "fn_explosion_40.loss",
        "fn f0(x) = x + 1\n" + "".join(f"fn f{i}(x) = f{i - 1}(x) + f{i - 1}(x)\n" for i in range(1, 41))
        + body("mean[b](f40(x[b, 0]))"))
    put(d, "fn_explosion_40_one_error.loss",
        "fn f0(x) = x + 1\n" + "".join(f"fn f{i}(x) = f{i - 1}(x) + f{i - 1}(x)\n" for i in range(1, 41))
        + body("mean[b](f40(x[b, 0])) + nosuch"))
    put(d, "fn_explosion_30_args.loss",
        "fn f0(x) = x + 1\n" + "".join(f"fn f{i}(x) = f{i - 1}(f{i - 1}(x))\n" for i in range(1, 31))
        + body("mean[b](f30(x[b, 0])) + nosuch"))

    # -- lets, metrics, order --
    put(d, "let_self_reference.loss", body("let t[b] = t[b] + 1", "mean[b](t[b])"))
    put(d, "let_use_before_define.loss", body("let u = t", "let t = 1", "u"))
    put(d, "let_mutual_reference.loss", body("let u = t", "let t = u", "u"))
    put(d, "metric_used_as_value.loss", body("metric q = s", "q"))
    put(d, "statement_after_result.loss", body("s", "let t = 1"))
    put(d, "two_results.loss", body("s", "s"))
    put(d, "let_missing_value.loss", body("let t =", "s"))
    put(d, "let_indexed_by_expression.loss", body("let t[b + 1] = 1", "s"))
    return d, ok


# ---------------------------------------------------------------------------------------------
# bad_data: each must make `lossc eval <loss> --inputs FILE` exit 1.
# ---------------------------------------------------------------------------------------------

DPO_NAMES = ["policy_chosen_logps", "policy_rejected_logps", "reference_chosen_logps", "reference_rejected_logps"]


def dpo_inputs(b=3):
    r = np.random.default_rng(7)
    return {n: (-r.random(b) * 10).round(3) for n in DPO_NAMES}


def ce_inputs(b=4, c=3):
    r = np.random.default_rng(8)
    return {"logits": r.standard_normal((b, c)).round(3), "target": (np.arange(b) % c).astype(np.int64)}


def ms_inputs(b=6, d=3):
    r = np.random.default_rng(9)
    return {"embeddings": r.standard_normal((b, d)).round(3), "labels": (np.arange(b) % 3).astype(np.int64)}


def to_json(tensors):
    return json.dumps({k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in tensors.items()})


def npz_bytes(arrays, compressed=False):
    """Like np.savez(_compressed), but with fixed zip timestamps so that reruns give the same bytes."""
    buf = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED
    with zipfile.ZipFile(buf, "w", method) as z:
        for name, a in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asanyarray(a), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = method
            z.writestr(info, member.getvalue())
    return buf.getvalue()


def npy_bytes(header_dict, payload):
    """A .npy v1.0 member with a hand-written header."""
    h = repr(header_dict).encode("latin1")
    pad = 64 - (10 + len(h) + 1) % 64
    h = h + b" " * pad + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h + payload


def zip_bytes(members):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name, data in members.items():
            z.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), data)
    return buf.getvalue()


ST_DTYPE = {np.dtype("float64"): "F64", np.dtype("float32"): "F32", np.dtype("int64"): "I64",
            np.dtype("int32"): "I32", np.dtype("bool"): "BOOL"}


def st_bytes(arrays, meta_override=None, header_raw=None, data_extra=b""):
    """A .safetensors file; `meta_override` patches tensor entries, `header_raw` replaces the header."""
    meta, data = {}, b""
    for k, v in arrays.items():
        raw = np.ascontiguousarray(v).tobytes()
        meta[k] = {"dtype": ST_DTYPE[v.dtype], "shape": list(v.shape), "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    for k, patch in (meta_override or {}).items():
        meta.setdefault(k, {}).update(patch)
    h = header_raw if header_raw is not None else json.dumps(meta, separators=(",", ":")).encode()
    return struct.pack("<Q", len(h)) + h + data + data_extra


def duplicate_member_zip(members):
    import warnings
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
            for name, data in members:
                z.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), data)
    return buf.getvalue()


def bzip2_zip(members):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_BZIP2) as z:
        for name, data in members.items():
            z.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), data, compress_type=zipfile.ZIP_BZIP2)
    return buf.getvalue()


def bad_data():
    d = reset("bad_data")
    ok = reset("ok_data")

    # ----- dpo: JSON -----
    good = dpo_inputs()
    put(d, "dpo__missing_input.json", to_json({k: v for k, v in good.items() if k != "reference_rejected_logps"}))
    put(d, "dpo__extra_input.json", to_json({**good, "policy_chosen_logpz": good["policy_chosen_logps"]}))
    put(d, "dpo__wrong_rank.json", to_json({**good, "policy_rejected_logps": good["policy_rejected_logps"].reshape(3, 1)}))
    put(d, "dpo__scalar_for_vector.json", to_json({**good, "policy_rejected_logps": -1.5}))
    put(d, "dpo__size_mismatch.json", to_json({**good, "reference_chosen_logps": good["reference_chosen_logps"][:2]}))
    put(d, "dpo__bool_for_float.json", to_json({**good, "policy_chosen_logps": [True, False, True]}))
    put(d, "dpo__string_value.json", to_json({**good, "policy_chosen_logps": ["-1.0", "-2.0", "-3.0"]}))
    put(d, "dpo__null_value.json", to_json({**good, "policy_chosen_logps": [-1.0, None, -3.0]}))
    put(d, "dpo__object_value.json", to_json({**good, "policy_chosen_logps": {"a": 1}}))
    put(d, "dpo__nul_in_name.json", to_json({**good, "x\u0000": [1.0]}))
    put(d, "dpo__leading_zero.json", to_json(good).replace("[", "[01, ", 1).replace("]", "]", 1))
    put(d, "dpo__bool_mixed_with_numbers.json", to_json({**good, "policy_chosen_logps": [1.0, True, 3.0]}))
    put(d, "dpo__trailing_comma_in_array.json", to_json(good).replace("]", ",]", 1))
    put(d, "dpo__json_syntax_error.json", to_json(good)[:-1] + ",}")
    put(d, "dpo__json_truncated.json", to_json(good)[:40])
    put(d, "dpo__json_trailing_garbage.json", to_json(good) + " {}")
    put(d, "dpo__json_single_quotes.json", to_json(good).replace('"', "'"))
    put(d, "dpo__json_comment.json", "// inputs\n" + to_json(good))
    put(d, "dpo__top_level_array.json", json.dumps([good["policy_chosen_logps"].tolist()]))
    put(d, "dpo__top_level_number.json", "3.5")
    put(d, "dpo__top_level_string.json", '"policy_chosen_logps"')
    put(d, "dpo__empty_object.json", "{}")
    put(d, "dpo__zero_length.json", b"")
    put(d, "dpo__whitespace_only.json", "  \n\t\n")
    put(d, "dpo__npz_bytes_in_json.json", npz_bytes(good))
    put(d, "dpo__non_utf8.json", to_json(good).encode().replace(b"policy_chosen", b"policy_ch\xffsen"))
    put(ok, "dpo__bom.json", "\ufeff" + to_json(good))
    put(ok, "dpo__nan_value.json", to_json({**good, "policy_chosen_logps": [float("nan"), -1.0, -2.0]}))
    put(d, "dpo__duplicate_key.json", to_json(good)[:-1] + ', "policy_chosen_logps": [1.0, 2.0, 3.0]}')
    put(d, "dpo__deep_nesting.json", '{"policy_chosen_logps": ' + "[" * 100000 + "]" * 100000 + "}")
    put(d, "dpo__deep_nesting_unclosed.json", '{"policy_chosen_logps": ' + "[" * 100000)
    put(d, "dpo__huge_integer.json", to_json({**good, "policy_chosen_logps": [1, 2, int("9" * 400)]}))
    put(d, "dpo__unknown_extension.csv", "policy_chosen_logps\n-1.0\n")
    put(d, "dpo__no_extension", to_json(good))
    # ----- dpo: npz -----
    good32 = {k: v.astype(np.float32) for k, v in good.items()}
    nz = npz_bytes(good32)
    put(d, "dpo__truncated.npz", nz[: len(nz) // 2])
    put(d, "dpo__truncated_after_header.npz", nz[:40])
    put(d, "dpo__zero_length.npz", b"")
    put(d, "dpo__not_a_zip.npz", to_json(good))
    put(d, "dpo__non_npy_member_only.npz", zip_bytes({"readme.txt": b"hello"}))
    put(d, "dpo__npy_bad_magic.npz", zip_bytes({f"{n}.npy": b"NOTNUMPY" + bytes(64) for n in DPO_NAMES}))
    put(d, "dpo__npy_header_garbage.npz",
        zip_bytes({f"{n}.npy": b"\x93NUMPY\x01\x00\x20\x00" + b"{'descr': <f8, shape: ((((}\n" + bytes(24) for n in DPO_NAMES}))
    put(d, "dpo__npy_huge_shape.npz",
        zip_bytes({f"{n}.npy": npy_bytes({"descr": "<f8", "fortran_order": False, "shape": (10**12,)}, bytes(24))
                   for n in DPO_NAMES}))
    put(d, "dpo__npy_shape_overflow.npz",
        zip_bytes({f"{n}.npy": npy_bytes({"descr": "<f8", "fortran_order": False, "shape": (2**40, 2**40, 2**40)}, bytes(24))
                   for n in DPO_NAMES}))
    put(d, "dpo__npy_short_payload.npz",
        zip_bytes({f"{n}.npy": npy_bytes({"descr": "<f8", "fortran_order": False, "shape": (3,)}, bytes(16))
                   for n in DPO_NAMES}))
    put(d, "dpo__npy_negative_shape.npz",
        zip_bytes({f"{n}.npy": npy_bytes({"descr": "<f8", "fortran_order": False, "shape": (-3,)}, bytes(24))
                   for n in DPO_NAMES}))
    put(d, "dpo__npy_object_dtype.npz",
        zip_bytes({f"{n}.npy": npy_bytes({"descr": "|O", "fortran_order": False, "shape": (3,)}, b"\x80\x04N." + bytes(20))
                   for n in DPO_NAMES}))
    put(d, "dpo__string_dtype.npz", npz_bytes({**good32, "policy_chosen_logps": np.array(["a", "b", "c"])}))
    put(d, "dpo__complex_dtype.npz", npz_bytes({**good32, "policy_chosen_logps": good["policy_chosen_logps"].astype(np.complex128)}))
    put(d, "dpo__structured_dtype.npz",
        npz_bytes({**good32, "policy_chosen_logps": np.zeros(3, dtype=[("a", "<f4"), ("b", "<i4")])}))
    put(d, "dpo__wrong_rank.npz", npz_bytes({**good32, "policy_chosen_logps": good32["policy_chosen_logps"].reshape(1, 3)}))
    put(d, "dpo__size_mismatch.npz", npz_bytes({**good32, "reference_rejected_logps": np.zeros(5, np.float32)}))
    put(d, "dpo__bool_for_float.npz", npz_bytes({**good32, "policy_chosen_logps": np.array([True, False, True])}))
    put(d, "dpo__missing_input.npz", npz_bytes({k: v for k, v in good32.items() if k != "policy_chosen_logps"}))
    put(d, "dpo__member_without_npy_suffix.npz",
        zip_bytes({n: npy_bytes({"descr": "<f8", "fortran_order": False, "shape": (3,)}, bytes(24)) for n in DPO_NAMES}))
    put(d, "dpo__duplicate_member.npz", duplicate_member_zip(
        [(f"{n}.npy", npy_bytes({"descr": "<f8", "fortran_order": False, "shape": (3,)}, bytes(24))) for n in DPO_NAMES]
        + [("policy_chosen_logps.npy", npy_bytes({"descr": "<f8", "fortran_order": False, "shape": (3,)}, bytes(24)))]))
    put(d, "dpo__extra_member_in_dir.npz",
        npz_bytes({**good32, "sub/policy_chosen_logps": good32["policy_chosen_logps"]}))
    put(ok, "dpo__bzip2_member.npz", bzip2_zip({f"{n}.npy": npy_bytes({"descr": "<f8", "fortran_order": False, "shape": (3,)}, bytes(24))
                                              for n in DPO_NAMES}))
    put(d, "dpo__npy_version_9.npz",
        zip_bytes({f"{n}.npy": b"\x93NUMPY\x09\x00" + npy_bytes({"descr": "<f8", "fortran_order": False, "shape": (3,)}, bytes(24))[8:]
                   for n in DPO_NAMES}))
    put(d, "dpo__npy_rank_65.npz",
        zip_bytes({f"{n}.npy": npy_bytes({"descr": "|b1", "fortran_order": False, "shape": (1,) * 65}, bytes(1)) for n in DPO_NAMES}))
    # ----- dpo: safetensors -----
    st = st_bytes(good32)
    put(d, "dpo__zero_length.safetensors", b"")
    put(d, "dpo__short_header_len.safetensors", b"\x05\x00\x00")
    put(d, "dpo__header_len_past_end.safetensors", struct.pack("<Q", 10**6) + b"{}")
    put(d, "dpo__header_len_huge.safetensors", struct.pack("<Q", 2**63) + b"{}")
    put(d, "dpo__corrupt_header.safetensors", struct.pack("<Q", 20) + b'{"policy_chosen_lo\xff' + bytes(8))
    put(d, "dpo__header_not_object.safetensors", st_bytes({}, header_raw=b"[1, 2, 3]"))
    put(d, "dpo__offset_past_end.safetensors",
        st_bytes(good32, {"policy_chosen_logps": {"data_offsets": [0, 10**6]}}))
    put(d, "dpo__offsets_reversed.safetensors",
        st_bytes(good32, {"policy_chosen_logps": {"data_offsets": [12, 0]}}))
    put(d, "dpo__offsets_shape_disagree.safetensors",
        st_bytes(good32, {"policy_chosen_logps": {"shape": [4]}}))
    put(d, "dpo__huge_shape.safetensors",
        st_bytes(good32, {"policy_chosen_logps": {"shape": [2**62, 4]}}))
    put(d, "dpo__unknown_dtype.safetensors",
        st_bytes(good32, {"policy_chosen_logps": {"dtype": "Q128"}}))
    put(d, "dpo__truncated.safetensors", st[:-5])
    put(d, "dpo__json_in_safetensors.safetensors", to_json(good))
    put(d, "dpo__size_mismatch.safetensors", st_bytes({**good32, "policy_chosen_logps": np.zeros(4, np.float32)}))
    put(d, "dpo__metadata_only.safetensors", st_bytes({}, header_raw=b'{"__metadata__": {"format": "pt"}}'))
    put(d, "dpo__overlapping_offsets.safetensors",
        st_bytes(good32, {n: {"data_offsets": [0, 12]} for n in DPO_NAMES}))
    put(d, "dpo__shape_with_negative.safetensors",
        st_bytes(good32, {"policy_chosen_logps": {"shape": [-3]}}))
    put(d, "dpo__missing_input.safetensors", st_bytes({k: v for k, v in good32.items() if k != "policy_chosen_logps"}))

    # ----- cross_entropy -----
    ce = ce_inputs()  # B=4, C=3
    put(d, "cross_entropy__label_out_of_range.json", to_json({**ce, "target": [0, 1, 3, 2]}))
    put(d, "cross_entropy__label_minus_one.json", to_json({**ce, "target": [0, -1, 2, 1]}))
    put(d, "cross_entropy__label_huge.json", to_json({**ce, "target": [0, 1, 2, 2**62]}))
    put(d, "cross_entropy__label_min_int.json", to_json({**ce, "target": [0, 1, 2, -(2**63)]}))
    put(d, "cross_entropy__label_beyond_i64.json", to_json({**ce, "target": [0, 1, 2, 2**64]}))
    put(d, "cross_entropy__fraction_in_int.json", to_json({**ce, "target": [0, 1.5, 2, 1]}))
    put(d, "cross_entropy__float_syntax_in_int.json", to_json({**ce, "target": [0.0, 1e0, 2.0, 1e30]}))
    put(d, "cross_entropy__bool_for_int.json", to_json({**ce, "target": [True, False, True, False]}))
    put(d, "cross_entropy__ragged_logits.json", to_json({**ce, "logits": [[0.1, 0.2, 0.3], [0.1, 0.2], [1, 2, 3], [1, 2, 3]]}))
    put(d, "cross_entropy__ragged_mixed_depth.json", to_json({**ce, "logits": [[0.1, 0.2, 0.3], 0.5, [1, 2, 3], [1, 2, 3]]}))
    put(d, "cross_entropy__wrong_rank_target.json", to_json({**ce, "target": [[0], [1], [2], [0]]}))
    put(d, "cross_entropy__wrong_rank_logits.json", to_json({**ce, "logits": ce["logits"].reshape(4, 3, 1)}))
    put(d, "cross_entropy__size_mismatch.json", to_json({**ce, "target": [0, 1, 2]}))
    put(d, "cross_entropy__zero_classes.json", to_json({"logits": [[], [], [], []], "target": [0, 0, 0, 0]}))
    put(d, "cross_entropy__swapped_names.json", to_json({"logits": ce["target"], "target": ce["logits"]}))
    put(d, "cross_entropy__nan_in_int.npz", npz_bytes({**ce, "target": np.array([0, np.nan, 1, 2])}))
    put(d, "cross_entropy__inf_in_int.npz", npz_bytes({**ce, "target": np.array([0, np.inf, 1, 2])}))
    put(d, "cross_entropy__fraction_in_int.npz", npz_bytes({**ce, "target": np.array([0, 0.5, 1, 2])}))
    put(d, "cross_entropy__label_out_of_range.npz", npz_bytes({**ce, "target": np.array([0, 1, 2, 3], np.int32)}))
    put(d, "cross_entropy__label_out_of_range_uint64.npz",
        npz_bytes({**ce, "target": np.array([0, 1, 2, 2**64 - 1], np.uint64)}))
    put(d, "cross_entropy__big_float_in_int.npz", npz_bytes({**ce, "target": np.array([0, 1, 2, 1e300])}))
    put(d, "cross_entropy__bool_for_int.npz", npz_bytes({**ce, "target": np.array([True, False, True, False])}))
    put(d, "cross_entropy__nan_in_int.safetensors", st_bytes({**ce, "target": np.array([0, np.nan, 1, 2])}))
    put(d, "cross_entropy__label_out_of_range.safetensors",
        st_bytes({**ce, "target": np.array([0, 1, 2, 3], np.int64)}))
    put(d, "cross_entropy__fortran_order_wrong_shape.npz",
        npz_bytes({**ce, "logits": np.asfortranarray(ce["logits"].T)}))

    # ----- multi_similarity(_mined) -----
    ms = ms_inputs()  # B=6, D=3
    put(d, "multi_similarity__size_mismatch.safetensors", st_bytes({**ms, "labels": np.arange(5, dtype=np.int64)}))
    put(d, "multi_similarity__size_mismatch.json", to_json({**ms, "labels": [0, 1, 2, 0, 1]}))
    put(d, "multi_similarity__labels_fraction.npz", npz_bytes({**ms, "labels": np.array([0, 1, 2, 0, 1, 2.5])}))
    put(d, "multi_similarity__labels_nan.safetensors", st_bytes({**ms, "labels": np.array([0, 1, 2, 0, 1, np.nan])}))
    put(d, "multi_similarity__wrong_rank_embeddings.json", to_json({**ms, "embeddings": ms["embeddings"].ravel()}))
    put(d, "multi_similarity__bool_embeddings.safetensors",
        st_bytes({**ms, "embeddings": ms["embeddings"] > 0}))
    put(d, "multi_similarity__missing_labels.safetensors", st_bytes({"embeddings": ms["embeddings"]}))
    put(d, "multi_similarity__huge_shape.safetensors",
        st_bytes(ms, {"embeddings": {"shape": [2**33, 2**33]}}))
    # B large enough that s[i, j] (B^2 elements) exceeds the interpreter's limit; compresses to ~nothing.
    big = 20000
    put(d, "multi_similarity__pairwise_too_large.npz",
        npz_bytes({"embeddings": np.ones((big, 1), np.float32), "labels": np.zeros(big, np.int8)}, compressed=True))
    put(d, "multi_similarity_mined__size_mismatch.npz", npz_bytes({**ms, "labels": np.arange(7)}))
    put(d, "multi_similarity_mined__labels_float.json", to_json({**ms, "labels": [0.5, 1, 2, 0, 1, 2]}))
    put(d, "multi_similarity_mined__ragged_embeddings.json",
        to_json({**ms, "embeddings": [[1, 2, 3]] * 5 + [[1, 2, 3, 4]]}))

    # ----- empty batches (B = 0): may be fine; ok_data if lossc gives a sensible value -----
    put(ok, "dpo__empty_batch.json", to_json({n: [] for n in DPO_NAMES}))
    # JSON cannot express shape [0, 3]: `[]` reads as shape [0], a rank error.
    put(d, "cross_entropy__empty_batch_json_rank_lost.json", to_json({"logits": np.zeros((0, 3)), "target": []}))
    put(ok, "cross_entropy__empty_batch.npz", npz_bytes({"logits": np.zeros((0, 3)), "target": np.zeros(0, np.int64)}))
    put(ok, "cross_entropy__empty_batch_zero_classes.safetensors",
        st_bytes({"logits": np.zeros((0, 0)), "target": np.zeros(0, np.int64)}))
    put(ok, "multi_similarity__empty_batch.npz",
        npz_bytes({"embeddings": np.zeros((0, 4)), "labels": np.zeros(0, np.int64)}))
    put(ok, "multi_similarity_mined__empty_batch.safetensors",
        st_bytes({"embeddings": np.zeros((0, 4)), "labels": np.zeros(0, np.int64)}))
    put(ok, "cross_entropy__all_ignored.json", to_json({**ce, "target": [-100, -100, -100, -100]}))
    put(ok, "cross_entropy__int32_target.npz", npz_bytes({**ce, "target": ce["target"].astype(np.int32)}))
    put(ok, "cross_entropy__integral_floats_in_int.npz", npz_bytes({**ce, "target": ce["target"].astype(np.float64)}))
    put(ok, "dpo__float32.safetensors", st)
    put(ok, "dpo__compressed.npz", npz_bytes(good32, compressed=True))
    return d, ok


def main():
    bad_sources()
    bad_data()


if __name__ == "__main__":
    main()
