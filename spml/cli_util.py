"""What every spml command shares: one error boundary, one way to give several values, one way to retire a flag.

The vocabulary (docs/cli.md):
- a command's positional argument is the file it works on (checkpoint, model, labels file); the data it trains,
  labels or evaluates on is --ann FILE and --images DIR; whatever it writes is --out;
- several values: repeat the option or separate them by commas, both everywhere (`several`);
- an old spelling keeps working for one release, with one line of deprecation on stderr (`deprecated=`): a
  retired flag, or a positional argument that became an option.
"""

from __future__ import annotations

from typing import Callable

import click

from spml.errors import SpmlError
from spml.logs import configure as configure_logging

CONTEXT = {"help_option_names": ["-h", "--help"]}

def _rewrite_args(args: list[str], deprecated: dict[str, str | Callable[[str], list[str]]]) -> list[str]:
    """Replace retired flags (old flag -> new flag, or a function of the old value giving the new tokens) (every one takes a value) by their new spelling, saying so once per flag."""
    out, i, said = [], 0, set()
    while i < len(args):
        token = args[i]
        if token == "--":
            out += args[i:]
            break
        name, eq, inline = token.partition("=")
        if name in deprecated:
            if eq:
                value, step = inline, 1
            elif i + 1 < len(args):
                value, step = args[i + 1], 2
            else:  # let click say the value is missing, under the new name
                value, step = None, 1
            new = deprecated[name]
            tokens = ([new] if value is None else [new, value]) if isinstance(new, str) else (
                new(value) if value is not None else [])
            if name not in said:
                said.add(name)
                shown = new if isinstance(new, str) else " ".join(new("V")) if value is None else " ".join(tokens)
                click.echo(f"deprecated: {name} will be removed in the next release; use {shown}", err=True)
            out += tokens
            i += step
            continue
        out.append(token)
        i += 1
    return out


def _move_positionals(args: list[str], moves: dict[int, str], takes_value: set[str]) -> list[str]:
    """Positional arguments of an old spelling (by position, from 1) given as the options that replaced them
    (`LABELS OUT` -> `LABELS --out OUT`), saying so once each. `takes_value`: the options whose next token is
    their value, not a positional."""
    out, position, i = [], 0, 0
    while i < len(args):
        token = args[i]
        if token == "--":
            out += args[i:]
            break
        if token.startswith("-") and len(token) > 1:
            step = 2 if token.partition("=")[0] in takes_value and "=" not in token else 1
            out += args[i:i + step]
            i += step
            continue
        position += 1
        if position in moves:
            option = moves[position]
            click.echo(f"deprecated: the positional {option.lstrip('-').upper()} will be removed in the next release; "
                       f"use {option} {token}", err=True)
            out += [option, token]
        else:
            out.append(token)
        i += 1
    return out


class _SpmlMixin:
    """SpmlError -> one line and exit 1; retired flags rewritten before parsing; the library's logging set up."""

    def __init__(self, *args, deprecated: dict | None = None, **kwargs):
        kwargs.setdefault("context_settings", dict(CONTEXT))
        super().__init__(*args, **kwargs)
        # not `self.deprecated`: click's Command has its own (the whole command deprecated, "(DEPRECATED)" in --help)
        self.renamed_flags = deprecated or {}

    def parse_args(self, ctx, args):
        flags = {k: v for k, v in self.renamed_flags.items() if isinstance(k, str)}
        if flags:
            args = _rewrite_args(list(args), flags)
        moves = {k: v for k, v in self.renamed_flags.items() if isinstance(k, int)}
        if moves:
            takes_value = {name for p in self.params if isinstance(p, click.Option) and not p.is_flag and not p.count
                           for name in p.opts + p.secondary_opts}
            args = _move_positionals(list(args), moves, takes_value)
        return super().parse_args(ctx, args)

    def invoke(self, ctx):
        configure_logging()
        try:
            return super().invoke(ctx)
        except SpmlError as e:
            raise click.ClickException(str(e)) from None


class SpmlCommand(_SpmlMixin, click.Command):
    pass


class SpmlGroup(_SpmlMixin, click.Group):
    command_class = SpmlCommand


def command(*args, **kwargs):
    """@command(...): click.command with spml's error boundary, -h/--help and `deprecated=`: {old flag: new flag,
    or a function of the old value giving the new tokens; or a position (from 1): the option a positional
    argument of the old spelling became}."""
    kwargs.setdefault("cls", SpmlCommand)
    return click.command(*args, **kwargs)


def group(*args, **kwargs):
    kwargs.setdefault("cls", SpmlGroup)
    return click.group(*args, **kwargs)


class _CommaSeparated(click.ParamType):
    """'a,b' -> (a, b), each item converted by `inner`, so repeating the option and commas mean the same."""

    def __init__(self, inner):
        self.inner = click.types.convert_type(inner)
        self.name = self.inner.name

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        items = [v.strip() for v in str(value).split(",")]
        if any(not v for v in items):
            self.fail(f"{value!r}: an empty value between commas", param, ctx)
        return tuple(self.inner.convert(v, param, ctx) for v in items)


class SeveralOption(click.Option):
    """An option of several(): --help shows the range of each value ([0<=x<1]) as click does for one value."""

    def get_help_extra(self, ctx):
        extra = super().get_help_extra(ctx)
        inner = getattr(self.type, "inner", None)
        if isinstance(inner, click.types._NumberRangeBase) and inner._describe_range():
            extra["range"] = inner._describe_range()
        return extra


def _flatten(ctx, param, value):
    return tuple(item for group in value or () for item in group)


def several(*decls, type=click.STRING, **kwargs):
    """An option that takes several values: `--tau 0.55 --tau 0.65` and `--tau 0.55,0.65` are the same (a tuple)."""
    kwargs.setdefault("cls", SeveralOption)
    return click.option(*decls, type=_CommaSeparated(type), multiple=True, callback=_flatten, **kwargs)


def version(f):
    return click.version_option(package_name="spml", message="%(prog)s %(version)s")(f)
