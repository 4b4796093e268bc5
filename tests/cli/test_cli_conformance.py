"""Every option of the original ``compress_classifier.py --help`` exists in ``distiller classify``.

``tests/data_files/seed_usage.txt`` is the usage block of the original's README, copied verbatim. The
test parses its options list (spellings and aliases, metavar or choices, nargs, and the defaults its
help texts state) and its usage line (mutually exclusive groups), and compares them with the argparse
parser of ``distiller classify`` (the same parser ``compress_classifier.py`` uses). Extra aliases,
extra choices and extra options of ours are allowed; a deliberate difference is listed, with its
reason, in ``DELIBERATE``.
"""

from __future__ import annotations

import argparse
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from distiller.cli.classify_parser import build_classify_parser, options_from_args

USAGE = Path(__file__).parents[1] / "data_files" / "seed_usage.txt"

# (option, attribute) -> why ours differs from the original on purpose.
DELIBERATE = {
    ("--qe-calibration", "metavar"): "calibration reads a seeded subset of the training split, never the test set "
                                     "(DESIGN §7), so the metavar says PORTION_OF_TRAIN_SET",
    ("DATASET_DIR", "nargs"): "DATASET_DIR is optional for modes that read no data and for the embedded digits "
                              "data (DESIGN §7)",
}


@dataclass
class SeedOption:
    spellings: list[str]
    nargs: object  # 0 (a flag), None (one value), an int, '?', '*' or '+'
    metavar: str | None
    choices: list[str] | None
    help: str = ""
    default: str | None = field(default=None)


def _args_format(text: str) -> tuple[object, str | None]:
    """(nargs, metavar) of an argparse invocation's value part, e.g. ``X [X ...]`` -> ('+', 'X')."""
    text = text.strip()
    if not text:
        return 0, None
    m = re.fullmatch(r"\[(\S+) \[\1 \.\.\.\]\]", text)
    if m:
        return "*", m.group(1)
    m = re.fullmatch(r"(\S+) \[\1 \.\.\.\]", text)
    if m:
        return "+", m.group(1)
    m = re.fullmatch(r"\[(\S+)\]", text)
    if m:
        return "?", m.group(1)
    words = text.split()
    assert len(set(words)) == 1, f"unexpected value format {text!r}"
    return (None if len(words) == 1 else len(words)), words[0]


def parse_seed_usage(path: Path = USAGE) -> tuple[list[SeedOption], list[list[str]]]:
    """The options of the usage block's options list, and the mutually exclusive groups of its usage line."""
    text = path.read_text()
    usage, _, listing = text.partition("\n\n")
    groups = []
    for body in re.findall(r"\[([^\[\]]*(?:\[[^\[\]]*\][^\[\]]*)*)\]", " ".join(usage.split())):
        if " | " in body:
            groups.append([part.split()[0] for part in body.split(" | ")])
    options: list[SeedOption] = []
    for line in listing.splitlines():
        m = re.match(r"^  (-\S.*?|[A-Z_]+)(?:  +(.*))?$", line)
        if m and not line.startswith("   "):
            invocation, help_text = m.group(1), m.group(2) or ""
            if invocation == "-h, --help":
                continue
            spellings, nargs, metavar = [], 0, None
            for part in invocation.split(", "):
                flag, _, rest = part.partition(" ")
                spellings.append(flag)
                nargs, metavar = _args_format(rest)
            if not spellings[0].startswith("-"):
                nargs, metavar = None, spellings[0]
            choices = metavar[1:-1].split(",") if metavar and metavar.startswith("{") else None
            options.append(SeedOption(spellings, nargs, None if choices else metavar, choices, help_text))
        elif options and line.startswith(" " * 24):
            options[-1].help += " " + line.strip()
    for opt in options:
        m = re.search(r"\(default: ([^)\s]+)|Default value is (\S+)", opt.help)
        if m:
            opt.default = m.group(1) or m.group(2)
    return options, groups


SEED_OPTIONS, SEED_GROUPS = parse_seed_usage()
PARSER = build_classify_parser()


def _action(spelling: str) -> argparse.Action:
    for action in PARSER._actions:
        if spelling in action.option_strings or (not action.option_strings and action.metavar == spelling):
            return action
    raise AssertionError(f"{spelling} of the original is missing from `distiller classify`")


def _nargs(action: argparse.Action) -> object:
    return 0 if action.nargs == 0 else action.nargs


def test_the_usage_block_parses_into_every_option():
    assert len(SEED_OPTIONS) == 85
    by_flag = {s: o for o in SEED_OPTIONS for s in o.spellings}
    assert by_flag["--activation-stats"].spellings == ["--activation-stats", "--act-stats"]
    assert (by_flag["--activation-stats"].nargs, by_flag["--activation-stats"].metavar) == ("+", "PHASE")
    assert by_flag["--earlyexit_thresholds"].nargs == "*"
    assert by_flag["--compress"].nargs == "?"
    assert by_flag["--sense-range"].nargs == 3
    assert by_flag["--summary"].choices == ["sparsity", "compute", "model", "modules", "png", "png_w_params"]
    assert by_flag["--weight-decay"].default == "1e-4" and by_flag["--qe-bits-wts"].default == "8"
    assert ["--resume-from", "--exp-load-weights-from"] in SEED_GROUPS
    assert ["--qe-stats-file", "--qe-dynamic", "--qe-calibration", "--qe-config-file"] in SEED_GROUPS


@pytest.mark.parametrize("seed", SEED_OPTIONS, ids=lambda o: o.spellings[0])
def test_original_option_exists_with_the_same_spellings_nargs_and_defaults(seed: SeedOption):
    name = seed.spellings[0]
    action = _action(name)
    for spelling in seed.spellings:  # every alias, on the same action
        assert _action(spelling) is action, f"{spelling} is not an alias of {name}"
    if (name, "nargs") not in DELIBERATE:
        assert _nargs(action) == seed.nargs, f"{name}: nargs {action.nargs!r}, the original {seed.nargs!r}"
    if seed.choices is not None:
        assert action.choices is not None and set(seed.choices) <= set(action.choices), name
        assert action.metavar is None, f"{name}: the help must list the choices, as the original's"
    elif seed.metavar is not None and (name, "metavar") not in DELIBERATE:
        ours = action.metavar or action.dest.upper()
        assert ours == seed.metavar, f"{name}: metavar {ours!r}, the original {seed.metavar!r}"
    if seed.default is not None:
        expected = type(action.default)(float(seed.default)) if isinstance(action.default, (int, float)) \
            else seed.default
        assert action.default == expected, f"{name}: default {action.default!r}, the original {seed.default}"


@pytest.mark.parametrize("group", SEED_GROUPS, ids=lambda g: g[0])
def test_mutually_exclusive_groups_are_kept(group: list[str]):
    actions = {_action(flag) for flag in group}
    assert any(actions <= set(g._group_actions) for g in PARSER._mutually_exclusive_groups), group


def test_deliberate_differences_are_real():
    """A listed difference that no longer differs should be removed from ``DELIBERATE``."""
    by_flag = {s: o for o in SEED_OPTIONS for s in o.spellings}
    assert _action("--qe-calibration").metavar != by_flag["--qe-calibration"].metavar
    assert _nargs(_action("DATASET_DIR")) != by_flag["DATASET_DIR"].nargs


def test_compress_classifier_help_shows_every_original_option(capsys):
    import importlib.util

    script = Path(__file__).parents[2] / "examples" / "classifier_compression" / "compress_classifier.py"
    spec = importlib.util.spec_from_file_location("compress_classifier", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: compress_classifier.py ")
    shown = set(re.findall(r"(?<![\w-])(--?[\w-]+|DATASET_DIR)", text))
    missing = [s for o in SEED_OPTIONS for s in o.spellings if s not in shown]
    assert missing == []


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def cli_log():
    handler = _Records()
    logger = logging.getLogger("distiller.cli")
    logger.addHandler(handler)
    yield handler.messages
    logger.removeHandler(handler)


def test_deprecated_resume_is_resume_from_with_reset_optimizer(cli_log):
    opts = options_from_args(PARSER.parse_args(["--resume", "ckpt.pth.tar", "-a", "simplenet_digits"]))
    assert opts.resume_from == "ckpt.pth.tar" and opts.reset_optimizer
    assert any('"--resume" flag is deprecated' in m and "--resume-from" in m for m in cli_log)
    with pytest.raises(SystemExit):  # still exclusive with the other ways to load a checkpoint
        PARSER.parse_args(["--resume", "a.pth.tar", "--resume-from", "b.pth.tar"])


def test_deprecated_extras_is_accepted_and_ignored_with_a_warning(cli_log):
    opts = options_from_args(PARSER.parse_args(["--extras", "extra.yaml"]))
    assert opts.resume_from is None
    assert any("--extras" in m and "ignored" in m for m in cli_log)


def test_compress_takes_an_optional_value():
    assert options_from_args(PARSER.parse_args(["--compress"])).compress is None
    assert options_from_args(PARSER.parse_args(["--compress", "s.yaml", "data"])).config_files == ["s.yaml"]
