"""``distiller completion {bash,zsh}``: a shell completion script, generated from the command's own parser.

The script is plain data read from :func:`distiller.cli.main.build_parser` (subcommands, their options,
which options take a value, and the choices of that value; architecture and dataset names come from
the registries), wrapped in a small shell function. Nothing runs Python while you type, so completion
is instant; regenerate the script after upgrading. Install it with::

    distiller completion bash > ~/.local/share/bash-completion/completions/distiller
    distiller completion zsh > ~/.zfunc/_distiller        # a folder on $fpath, before compinit
"""

from __future__ import annotations

import argparse
import contextlib
import re
from dataclasses import dataclass, field

from distiller.cli.console import emit

__all__ = ["Command", "commands_of", "render_bash", "render_zsh"]

SHELLS = ("bash", "zsh")
FILES = "@files"  # the value is a path: complete file names
ANY = "@any"  # a number or free text: nothing to suggest


@dataclass
class Command:
    """What completion needs of one (sub)command: ``path`` is ``""`` for ``distiller``, else ``"lottery imp"``."""

    path: str
    children: list[tuple[str, str]] = field(default_factory=list)  # (subcommand, help)
    options: list[tuple[str, str]] = field(default_factory=list)  # (option string, help)
    values: dict[str, list[str] | str] = field(default_factory=dict)  # option -> choices, FILES or ANY
    positional_choices: list[str] = field(default_factory=list)


def _registry_names(dest: str) -> list[str] | None:
    """Architecture and dataset names for options that take one (their parsers accept any case)."""
    if dest in ("arch", "kd_teacher"):
        from distiller.models import list_models

        return list(list_models())
    if dest == "dataset":
        from distiller.data import DATASETS

        return list(DATASETS.names())
    return None


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    text = action.help or ""
    with contextlib.suppress(KeyError, TypeError, ValueError):  # a stray "%" in a help text
        text = parser._get_formatter()._expand_help(action)
    text = " ".join(text.split())
    return text if len(text) <= 72 else text[:71] + "…"


def _value_of(action: argparse.Action) -> list[str] | str:
    names = _registry_names(action.dest)
    if names is not None:
        return names
    if action.choices is not None:
        return [str(c) for c in action.choices]
    return FILES if action.type in (None, str) else ANY


def commands_of(parser: argparse.ArgumentParser, path: str = "") -> list[Command]:
    """``parser``'s command and, depth first, every subcommand below it."""
    command = Command(path)
    below: list[Command] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, child in action.choices.items():
                command.children.append((name, " ".join(helps.get(name, "").split())))
                below.extend(commands_of(child, f"{path} {name}".strip()))
        elif action.help == argparse.SUPPRESS:
            continue
        elif action.option_strings:
            for option in action.option_strings:
                command.options.append((option, _help(parser, action)))
                if action.nargs != 0:
                    command.values[option] = _value_of(action)
        elif action.choices is not None:
            command.positional_choices.extend(str(c) for c in action.choices)
    return [command, *below]


_SAFE_WORD = re.compile(r"^[A-Za-z0-9_.,+@%/=-]+$")  # no ":" either: zsh separates help with it


def _words(words: list[str]) -> str:
    """Words for a shell list; anything a shell would expand is refused, not escaped (none exist today)."""
    for word in words:
        if not _SAFE_WORD.match(word):
            raise ValueError(f"cannot complete {word!r}: not a plain word")
    return " ".join(words)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _completion_words(command: Command) -> list[str]:
    """What a plain word completes to: a subcommand, or one of a positional argument's choices."""
    return [name for name, _ in command.children] or command.positional_choices


def render_bash(commands: list[Command], version: str) -> str:
    """The bash script: ``complete -F _distiller distiller``; bash 3.2 or newer, no bash-completion needed."""
    paths = "|".join(f'"{c.path}"' for c in commands)
    words = "\n".join(
        f'        "{c.path}") REPLY="{_words(_completion_words(c))}" ;;' for c in commands if _completion_words(c)
    )
    options = "\n".join(f'        "{c.path}") REPLY="{_words([o for o, _ in c.options])}" ;;' for c in commands)
    values = []
    for c in commands:
        by_value: dict[str, list[str]] = {}
        for option, value in c.values.items():
            by_value.setdefault(value if isinstance(value, str) else _words(value), []).append(option)
        for value, opts in by_value.items():
            patterns = "|".join(f'"{c.path}|{o}"' for o in opts)
            values.append(f'        {patterns}) REPLY="{value}" ;;')
    return _BASH.format(version=version, paths=paths, words=words, options=options, values="\n".join(values))


def render_zsh(commands: list[Command], version: str) -> str:
    """The zsh script: autoloadable from ``$fpath`` as ``_distiller``, or sourced after ``compinit``."""
    paths = "|".join(_quote(c.path) for c in commands)
    words, options, values = [], [], []
    for c in commands:
        if c.children:
            entries = " ".join(_quote(f"{name}:{text}") for name, text in c.children)
        else:
            entries = " ".join(_quote(f"{name}:") for name in _words(c.positional_choices).split())
        words.append(f"        ({_quote(c.path)}) reply=({entries}) ;;")
        entries = " ".join(_quote(f"{o}:{text}") for o, text in c.options)
        options.append(f"        ({_quote(c.path)}) reply=({entries}) ;;")
        for option, value in c.values.items():
            choices = value if isinstance(value, str) else _words(value)
            values.append(f"        ({_quote(c.path + '|' + option)}) REPLY={_quote(choices)} ;;")
    return _ZSH.format(
        version=version, paths=paths, words="\n".join(words), options="\n".join(options), values="\n".join(values)
    )


_BASH = """\
# bash completion for distiller (distiller-nn {version}); regenerate with: distiller completion bash

__distiller_is_command() {{  # is $1 a command path ("", "classify", "lottery imp", ...)?
    case "$1" in
        {paths}) return 0 ;;
        *) return 1 ;;
    esac
}}

__distiller_words() {{  # subcommands of command path $1, or the choices of its positional argument
    case "$1" in
{words}
        *) REPLY="" ;;
    esac
}}

__distiller_options() {{
    case "$1" in
{options}
        *) REPLY="" ;;
    esac
}}

__distiller_value() {{  # what follows option $2 of command path $1; status 1 if it takes no value
    case "$1|$2" in
{values}
        *) return 1 ;;
    esac
}}

_distiller() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="${{COMP_WORDS[COMP_CWORD-1]}}" path="" word i assigned=""
    COMPREPLY=()
    if [[ "$cur" == "=" ]]; then  # --option=<TAB>: bash splits the word at "="
        cur="" assigned=1
    elif [[ "$prev" == "=" && $COMP_CWORD -ge 2 ]]; then
        prev="${{COMP_WORDS[COMP_CWORD-2]}}" assigned=1
    fi
    for ((i = 1; i < COMP_CWORD; i++)); do  # the subcommand path typed so far
        word="${{COMP_WORDS[i]}}"
        [[ "$word" == -* ]] && continue
        __distiller_is_command "${{path:+$path }}$word" && path="${{path:+$path }}$word"
    done
    if [[ -z "$assigned" && "$cur" == -* ]]; then
        __distiller_options "$path"
        COMPREPLY=($(compgen -W "$REPLY" -- "$cur"))
    elif __distiller_value "$path" "$prev"; then
        case "$REPLY" in
            {any}) ;;
            {files}) compopt -o filenames 2>/dev/null; local IFS=$'\\n'; COMPREPLY=($(compgen -f -- "$cur")) ;;
            *) COMPREPLY=($(compgen -W "$REPLY" -- "$cur")) ;;
        esac
    else
        __distiller_words "$path"
        if [[ -n "$REPLY" ]]; then
            COMPREPLY=($(compgen -W "$REPLY" -- "$cur"))
        else
            compopt -o filenames 2>/dev/null; local IFS=$'\\n'; COMPREPLY=($(compgen -f -- "$cur"))
        fi
    fi
    return 0
}}

complete -F _distiller distiller
""".replace("{any}", ANY).replace("{files}", FILES)

_ZSH = """\
#compdef distiller
# zsh completion for distiller (distiller-nn {version}); regenerate with: distiller completion zsh

__distiller_is_command() {{  # is $1 a command path ('', 'classify', 'lottery imp', ...)?
    case $1 in
        ({paths}) return 0 ;;
        (*) return 1 ;;
    esac
}}

__distiller_words() {{  # subcommands of command path $1 (name:help), or its positional argument's choices
    case $1 in
{words}
        (*) reply=() ;;
    esac
}}

__distiller_options() {{
    case $1 in
{options}
        (*) reply=() ;;
    esac
}}

__distiller_value() {{  # what follows option $2 of command path $1; status 1 if it takes no value
    case "$1|$2" in
{values}
        (*) return 1 ;;
    esac
}}

_distiller() {{
    local path_='' word i cur=${{words[CURRENT]}} prev=${{words[CURRENT-1]}} assigned=''
    local -a reply
    local REPLY
    for (( i = 2; i < CURRENT; i++ )); do  # the subcommand path typed so far
        word=${{words[i]}}
        [[ $word == -* ]] && continue
        __distiller_is_command "${{path_:+$path_ }}$word" && path_=${{path_:+$path_ }}$word
    done
    if [[ $cur == --*=* ]]; then  # --option=value
        prev=${{cur%%=*}} assigned=1
        compset -P '*='
    fi
    if [[ -z $assigned && $cur == -* ]]; then
        __distiller_options "$path_"
        _describe -t options option reply
    elif __distiller_value "$path_" "$prev"; then
        case $REPLY in
            ({any}) _message 'value' ;;
            ({files}) _files ;;
            (*) compadd -- ${{=REPLY}} ;;
        esac
    else
        __distiller_words "$path_"
        if (( $#reply )); then
            _describe -t commands command reply
        else
            _files
        fi
    fi
}}

if [[ $zsh_eval_context[-1] == loadautofunc ]]; then
    _distiller "$@"
else
    compdef _distiller distiller
fi
""".replace("{any}", ANY).replace("{files}", FILES)


def run(args: argparse.Namespace, argv: list[str]) -> int:
    import distiller
    from distiller.cli.main import build_parser

    commands = commands_of(build_parser())
    render = render_bash if args.shell == "bash" else render_zsh
    emit(render(commands, distiller.__version__).rstrip("\n"))
    return 0


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    sub = subparsers.add_parser(
        "completion",
        help="print a shell completion script (bash or zsh) for distiller",
        description="Print a completion script for SHELL, generated from this command's options. Install it "
        "with: distiller completion bash > ~/.local/share/bash-completion/completions/distiller (bash), or "
        "distiller completion zsh > DIR/_distiller for a DIR on $fpath (zsh); or source it from your shell's "
        "startup file.",
    )
    sub.add_argument("shell", choices=SHELLS, help="the shell to complete in")
    sub.set_defaults(handler=run)
