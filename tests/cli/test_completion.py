"""``distiller completion {bash,zsh}``: scripts generated from the parser, checked by the shells themselves."""

from __future__ import annotations

import shutil
import subprocess

import pytest

import distiller
from distiller.cli.completion_cmd import ANY, FILES, Command, commands_of, render_bash, render_zsh
from distiller.cli.main import build_parser, main

BASH = shutil.which("bash")
ZSH = shutil.which("zsh")


@pytest.fixture(scope="module")
def commands() -> list[Command]:
    return commands_of(build_parser())


@pytest.fixture(scope="module")
def scripts(commands) -> dict[str, str]:
    return {"bash": render_bash(commands, distiller.__version__), "zsh": render_zsh(commands, distiller.__version__)}


def test_completion_prints_the_script(capsys, scripts):
    assert main(["completion", "bash"]) == 0
    assert capsys.readouterr().out == scripts["bash"].rstrip("\n") + "\n"


def test_commands_cover_every_subcommand_and_option(commands):
    by_path = {c.path: c for c in commands}
    top = {name for name, _ in by_path[""].children}
    assert {"classify", "validate", "lottery", "summary", "completion"} <= top
    assert {"lottery ticket", "lottery imp"} <= set(by_path)
    classify = by_path["classify"]
    options = {o for o, _ in classify.options}
    assert {"--epochs", "-a", "--arch", "--compress", "--qe-calibration", "--thinnify", "--amc"} <= options
    assert "resnet20_cifar" in classify.values["--arch"]  # architecture names from the model registry
    assert "digits" in classify.values["--dataset"]
    assert classify.values["--resume-from"] == FILES
    assert classify.values["--epochs"] == ANY
    assert "--evaluate" not in classify.values  # a flag takes no value
    assert by_path["list"].positional_choices[:2] == ["models", "datasets"]


def test_unsafe_choice_is_refused():
    command = Command("x", options=[("--mode", "")], values={"--mode": ["ok", "$(rm -rf ~)"]})
    with pytest.raises(ValueError, match="not a plain word"):
        render_bash([command], "0")


def test_bash_script_names_the_subcommands_and_options(scripts, commands):
    script = scripts["bash"]
    assert script.rstrip().endswith("complete -F _distiller distiller")
    for name, _ in commands[0].children:
        assert name in script
    for option in ("--epochs", "--compress", "--qe-calibration", "--greedy-target-density"):
        assert option in script


def test_completion_rejects_an_unknown_shell(capsys):
    with pytest.raises(SystemExit):
        main(["completion", "fish"])
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.skipif(BASH is None, reason="bash is not installed")
def test_bash_script_is_valid_bash(scripts, tmp_path):
    path = tmp_path / "distiller.bash"
    path.write_text(scripts["bash"])
    result = subprocess.run([BASH, "-n", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def _bash_complete(script_path, *words: str) -> list[str]:
    """COMPREPLY of ``_distiller`` for the command line ``words`` (the last one is being completed)."""
    quoted = " ".join("'" + w.replace("'", "'\\''") + "'" for w in words)
    program = (
        f"source '{script_path}'\n"
        f"COMP_WORDS=({quoted}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); COMPREPLY=()\n"
        "_distiller\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    result = subprocess.run([BASH, "--norc", "--noprofile", "-c", program], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return [line for line in result.stdout.splitlines() if line]


@pytest.mark.skipif(BASH is None, reason="bash is not installed")
@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (("distiller", "cla"), ["classify"]),
        (("distiller", "--debug", "vali"), ["validate"]),
        (("distiller", "classify", "--ep"), ["--epochs"]),
        (("distiller", "classify", "--qe-cal"), ["--qe-calibration"]),
        (("distiller", "classify", "--summary", "sp"), ["sparsity"]),
        (("distiller", "classify", "-a", "resnet56_c"), ["resnet56_cifar", "resnet56_cifar_earlyexit"]),
        (("distiller", "classify", "--arch", "=", "simplenet_m"), ["simplenet_mnist"]),  # bash splits at "="
        (("distiller", "list", "mo"), ["models"]),
        (("distiller", "lottery", "i"), ["imp"]),
        (("distiller", "lottery", "imp", "--rou"), ["--rounds"]),
        (("distiller", "completion", "z"), ["zsh"]),
        (("distiller", "classify", "--epochs", ""), []),  # a number: nothing to suggest
    ],
)
def test_bash_completes(scripts, tmp_path, words, expected):
    path = tmp_path / "distiller.bash"
    path.write_text(scripts["bash"])
    assert _bash_complete(path, *words) == expected


@pytest.mark.skipif(BASH is None, reason="bash is not installed")
def test_bash_completes_file_names_for_paths(scripts, tmp_path):
    path = tmp_path / "distiller.bash"
    path.write_text(scripts["bash"])
    (tmp_path / "checkpoint.pth.tar").write_bytes(b"")
    assert _bash_complete(path, "distiller", "classify", "--resume-from", str(tmp_path / "check")) == [
        str(tmp_path / "checkpoint.pth.tar")
    ]


def test_zsh_script_is_an_autoloadable_completion_function(scripts, commands):
    script = scripts["zsh"]
    assert script.startswith("#compdef distiller\n")
    assert "compdef _distiller distiller" in script
    for name, _ in commands[0].children:
        assert f"'{name}:" in script  # subcommands with their help
    assert "'--epochs:" in script


# zsh's completion builtins replaced by stubs that print what the function asked for.
_ZSH_STUBS = r"""
compdef() { : }
compset() { : }
_describe() { local -a entries; entries=("${(@P)${@[-1]}}"); print -r -- ${entries%%:*} }
compadd() { shift; print -r -- "$@" }
_files() { print -r -- @files }
_message() { print -r -- @any }
"""


@pytest.mark.skipif(ZSH is None, reason="zsh is not installed")
def test_zsh_script_is_valid_and_completes(scripts, tmp_path):
    path = tmp_path / "_distiller"
    path.write_text(scripts["zsh"])
    result = subprocess.run([ZSH, "-n", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr

    def complete(*words: str) -> list[str]:
        quoted = " ".join("'" + w.replace("'", "'\\''") + "'" for w in words)
        program = f"{_ZSH_STUBS}\nsource '{path}'\nwords=({quoted}); CURRENT=$#words\n_distiller\n"
        run = subprocess.run([ZSH, "-f", "-c", program], capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        return run.stdout.split()

    # zsh filters by the typed prefix itself; the function offers the candidates of the right kind.
    assert "classify" in complete("distiller", "cla")
    assert "--epochs" in complete("distiller", "classify", "--ep")
    assert "resnet20_cifar" in complete("distiller", "classify", "--arch=res")
    assert complete("distiller", "classify", "--summary", "") == [
        "sparsity",
        "compute",
        "model",
        "modules",
        "png",
        "png_w_params",
    ]
    assert complete("distiller", "lottery", "") == ["ticket", "imp"]
    assert "--rounds" in complete("distiller", "lottery", "imp", "--r")
    assert complete("distiller", "classify", "--resume-from", "") == ["@files"]
    assert complete("distiller", "classify", "--epochs", "") == ["@any"]
