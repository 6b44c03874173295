"""Fuzzing the argument parsers: pooling matrices, the shapes functions, and `cnnlab` itself
with random argv. Only cnnlab's own errors (or argparse's usage exit) may come out.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.fuzzing import fuzz_settings, memory_cap, record

from cnnlab import cli
from cnnlab.errors import CnnlabError, ConfigError, ShapeError
from cnnlab.models import list_models
from cnnlab.pooling import parse_matrix, pool_matrix
from cnnlab.shape_solver import solve_conv
from cnnlab.shapes import conv2d_output, conv_output_size, pool2d_output, pool_output_size

pytestmark = pytest.mark.fuzz

AS_HEADROOM = 1 << 30

ints = st.one_of(
    st.integers(-3, 40), st.sampled_from([0, 2**31, 2**63, 10**30, -(10**30)]), st.integers()
)
# what a caller may pass where an int or (h, w) pair is expected, sane or not
int_pairs = st.one_of(
    ints,
    st.tuples(ints, ints),
    st.lists(ints, max_size=3),
    st.none(),
    st.booleans(),
    st.floats(),
    st.text(max_size=4),
    st.tuples(st.floats(), ints),
)
paddings = st.one_of(int_pairs, st.sampled_from(["same", "valid", "SAME", "full", ""]))

# text that looks like a matrix often enough to get past the first checks
matrix_text = st.one_of(
    st.text(max_size=60),
    st.text(alphabet="[](),.-+eE0123456789 \n#_xjinfa", max_size=80),
    st.lists(
        st.lists(st.one_of(st.integers(), st.floats(), st.text(max_size=3)), max_size=5), max_size=5
    ).map(repr),
    st.integers(1, 3000).map(lambda n: "[" * n + "1" + "]" * n),
)

square_matrices = (
    st.integers(1, 6)
    .flatmap(
        lambda w: st.lists(
            st.lists(st.integers(-99, 99), min_size=w, max_size=w), min_size=1, max_size=6
        )
    )
    .map(str)
)


def expect_own_errors(target: str, call) -> object | None:
    """Run call(); a CnnlabError is fine (counted), anything else propagates as the bug it is."""
    try:
        with memory_cap(AS_HEADROOM):
            result = call()
    except CnnlabError as e:
        assert str(e)  # every error says something
        record(target, type(e).__name__)
        return None
    record(target, "ok")
    return result


@fuzz_settings()
@given(
    text=st.one_of(square_matrices, matrix_text),
    op=st.sampled_from(["max", "avg", "min"]),
    kernel=int_pairs,
    stride=int_pairs,
)
def test_parse_and_pool_matrix(text, op, kernel, stride):
    rows = expect_own_errors("pool: parse_matrix on random text", lambda: parse_matrix(text))
    if rows is not None:
        assert rows and all(len(r) == len(rows[0]) for r in rows)
        res = expect_own_errors(
            "pool: pool_matrix with random kernel/stride", lambda: pool_matrix(rows, op, kernel, stride)
        )
        if res is not None:
            assert len(list(res.windows())) == res.shape[0] * res.shape[1]


@fuzz_settings()
@given(n=int_pairs, k=int_pairs, s=int_pairs, p=paddings, d=int_pairs, ceil=st.booleans())
def test_shapes_functions(n, k, s, p, d, ceil):
    out = expect_own_errors(
        "shapes: conv2d_output/pool2d_output on random arguments", lambda: conv2d_output(n, k, s, p, d)
    )
    if out is not None:
        assert min(out.size) >= 1 and out.formula()
    out = expect_own_errors(
        "shapes: conv2d_output/pool2d_output on random arguments",
        lambda: pool2d_output(n, k, s, p, d, ceil),
    )
    if out is not None:
        assert min(out.size) >= 1 and out.describe()


@fuzz_settings()
@given(n=ints, k=ints, s=ints, p=ints, d=ints, ceil=st.booleans())
def test_one_axis_sizes(n, k, s, p, d, ceil):
    for fn in (lambda: conv_output_size(n, k, s, p, d), lambda: pool_output_size(n, k, s, p, d, ceil)):
        out = expect_own_errors("shapes: one-axis sizes on random ints", fn)
        assert out is None or out >= 1


@fuzz_settings(scale=0.5)
@given(n=int_pairs, k=int_pairs, t=int_pairs, ms=ints, mp=st.one_of(st.none(), ints), d=int_pairs)
def test_solver(n, k, t, ms, mp, d):
    sol = expect_own_errors(
        "shapes: solve_conv on random arguments", lambda: solve_conv(n, k, t, ms, mp, d)
    )
    if sol is not None:
        assert all(c.size == sol.target for c in sol.matches)


# --- the CLI: `cnnlab shapes ...` and `cnnlab shapes pool-matrix ...` with random argv -------

odd_tokens = st.sampled_from(
    ["0", "-1", "4097", "100000", "99999999999999999999", "1e3", "x", "", "-", "٣", "1_0"]
)
good_sizes = st.integers(1, 40).map(str)
size_tokens = st.integers(0, 11).flatmap(lambda i: odd_tokens if i == 0 else good_sizes)  # 1 odd in 12
SIZE_FLAGS = {
    "conv": ["--input", "--kernel", "--stride", "--padding", "--dilation"],
    "pool": ["--input", "--kernel", "--stride", "--padding", "--dilation"],
    "solve": ["--input", "--kernel", "--target", "--dilation"],
}
SCALAR_FLAGS = {"solve": ["--max-stride", "--max-padding"]}
SWITCHES = {"conv": ["--json"], "pool": ["--json", "--ceil-mode"], "solve": ["--json"]}


@st.composite
def argv(draw, run_dir: str) -> list[str]:
    """A mostly well-formed command line for one of the shapes/pool commands."""
    command = draw(st.sampled_from(["conv", "pool", "solve", "model", "matrix"]))
    if command == "matrix":
        args = ["shapes", "pool-matrix", draw(st.one_of(square_matrices, square_matrices, matrix_text))]
        for flag in ("--kernel", "--stride"):
            if draw(st.booleans()):
                args += [flag, draw(size_tokens)]
        if draw(st.booleans()):
            args += ["--op", draw(st.sampled_from(["max", "avg", "both", "sum"]))]
    elif command == "model":
        target = draw(
            st.sampled_from(
                [
                    *list_models(),
                    "nope",
                    run_dir,
                    run_dir + "/model.safetensors",
                    run_dir + "/missing.safetensors",
                    "/",
                ]
            )
        )
        args = ["shapes", "model", target]
        if draw(st.booleans()):
            # sizes up to 96 build for real; larger ones must be refused before allocating
            sides = st.one_of(st.integers(1, 96).map(str), st.integers(1, 96).map(str), odd_tokens)
            args += ["--input", *draw(st.lists(sides, min_size=3, max_size=3))]
    else:
        args = ["shapes", command]
        for flag in SIZE_FLAGS[command]:
            if flag in ("--input", "--kernel", "--target") or draw(st.booleans()):
                values = size_tokens
                if (command, flag) == ("conv", "--padding"):
                    values = st.one_of(size_tokens, st.sampled_from(["same", "valid"]))
                count = draw(st.sampled_from([1, 1, 1, 2, 2, 2, 3, 0]))
                args += [flag, *draw(st.lists(values, min_size=count, max_size=count))]
        for flag in SCALAR_FLAGS.get(command, []):
            if draw(st.booleans()):
                args += [flag, draw(size_tokens)]
    for switch in SWITCHES.get(command, []) + ["--quiet"]:
        if draw(st.booleans()):
            args.append(switch)
    if draw(st.integers(0, 19)) == 0:  # now and then a stray token anywhere
        args.insert(draw(st.integers(0, len(args))), draw(st.text(max_size=6)))
    return args


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> str:
    """A real run folder (a tiny trained-shape mlp) for `shapes model RUN_DIR`."""
    import torch

    from cnnlab.data.datasets import MNIST
    from cnnlab.models import get_model
    from cnnlab.runs import run_metadata, save_weights

    folder = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    save_weights(
        folder / "model.safetensors",
        get_model("mlp", hidden=(8,)),
        run_metadata("mlp", {"hidden": [8]}, MNIST),
    )
    return str(folder)


@fuzz_settings()
@given(data=st.data())
def test_cli_random_argv(run_dir, data, capsys, tmp_path_factory, monkeypatch):
    monkeypatch.chdir(tmp_path_factory.getbasetemp())
    args = data.draw(argv(run_dir))
    try:
        with memory_cap(AS_HEADROOM):
            code = cli.main(args)
    except SystemExit as e:  # argparse: usage error (2) or --help (0)
        assert e.code in (0, 2), args
        outcome = "usage error (argparse, exit 2)" if e.code else "help"
    else:
        assert code in (0, 1, 2), args
        outcome = {0: "ok (exit 0)", 1: "no solution (exit 1)", 2: "cnnlab error (exit 2)"}[code]
    err = capsys.readouterr().err
    assert "Traceback" not in err, (args, err)
    if outcome.startswith("cnnlab error"):
        assert err.startswith("cnnlab: error: ") and err.count("\n") == 1, err  # one line
    record("CLI: random argv for shapes conv/pool/solve/model and pool", outcome)


# --- regressions found by the fuzzers above --------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["shapes", "model", "mlp", "--input", "3", "100000", "100000"],  # was a torch RuntimeError
        ["shapes", "model", "mlp", "--input", "1", "4096", "4096"],  # 4.3G parameters: was 17 GB
        ["shapes", "model", "cnn", "--input", "3", "4096", "4096"],  # 2x16x4096^2 activations
    ],
)
def test_huge_models_are_refused_before_allocating(args, capsys):
    with memory_cap(256 << 20):
        assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("cnnlab: error: ") and "limit" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "kwargs",
    [
        {"hidden": [10**9]},
        {"hidden": [8] * 1000},
        {"width": float("inf")},
        {"width": "16"},
        {"widths": [8], "blocks": 10**12},
        {"hidden": [10**5, 10**5]},
    ],
)
def test_get_model_refuses_absurd_options_with_config_error(kwargs):
    from cnnlab.models import get_model

    name = next(
        n
        for n, keys in {"mlp": {"hidden"}, "cnn": {"width"}, "resnet": {"blocks"}}.items()
        if keys & set(kwargs)
    )
    with memory_cap(256 << 20), pytest.raises(ConfigError):
        get_model(name, **kwargs)


def test_pool_matrix_nesting_and_huge_numbers():
    with pytest.raises(ConfigError):
        parse_matrix("[" * 5000 + "]" * 5000)
    with pytest.raises((ConfigError, ShapeError)):
        parse_matrix("[[" + "9" * 5000 + "]]")


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ("5", "must be a JSON object"),  # was TypeError: argument after ** must be a mapping
        ("[" * 30_000 + "]" * 30_000, "not valid JSON"),  # was RecursionError
        ("{'a': 1}", "not valid JSON"),
    ],
)
def test_train_model_kwargs_must_be_a_json_object(kwargs, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["train", "--model", "mlp", "--model-kwargs", kwargs])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_train_config_model_kwargs_type():
    from cnnlab.config import make_config

    with pytest.raises(ConfigError, match="model_kwargs must be a dict"):
        make_config(model_kwargs=[1])
