"""The job's command line, built from the config declarations in `pipeline.config`.

Every setting with a flag becomes `--setting-name` (or the flag its declaration names), typed
from its field, with its help and shown default; a few options belong to the invocation rather
than to the config (`--config`, `--runner`, `--ray-address`, `--no-progress`). The README's
flag table is `python -m pipeline.flags` (a test checks that they agree).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

from pipeline.config import FIELDS

RUNNERS = ("ray", "inprocess")

# (flag, shown default, help, argparse keywords): options of the invocation, not settings.
INVOCATION = [
    ("--config", "", "a YAML file of settings, as `box_threshold: 0.2` (the names above, with `_` or `-`, flat or under "
                     "`labels:`, `resources:`, `policy:`; also `shard_retries`, `teacher_tries`, `max_caption_chars`); "
                     "flags given on the command line win", {"metavar": "FILE.yaml"}),
    ("--runner", "`ray`", "`ray`, or `inprocess` (the same stages without Ray)", {"choices": RUNNERS, "default": "ray"}),
    ("--ray-address", "", "the Ray cluster to join (default: the one the job was submitted to, else a new local one)", {}),
    ("--no-progress", "off", "no progress bar", {"action": "store_true"}),
]
JOB_DESCRIPTION = "Label img2dataset WebDataset shards with GLIP-style phrase boxes."
JOB_EPILOG = """exit codes: 0 every shard done; 1 some shard failed (each is named); 2 bad flag, config,
input or teacher; 3 another run holds the output (OUTPUT/_lock.json); 130 interrupted (Ctrl-C).
Settings may also come from --config FILE.yaml (keys as the flags, with _ or -); flags win."""
SECTION_TITLES = {None: "What to label", "labels": "What changes the labels (hashed: resume compares these)",
                  "resources": "Resources", "policy": "Policy"}


class _JobParser(argparse.ArgumentParser):
    """One-line errors (the usage block buries them), with a hint for an unquoted glob."""

    def error(self, message: str) -> None:  # type: ignore[override]
        if "unrecognized arguments" in message and ".tar" in message:
            message += "; quote the --input pattern ('dir/*.tar') so the shell does not expand it"
        self.exit(2, f"error: {message} (see --help)\n")


def parse_job_args(argv: list[str] | None) -> argparse.Namespace:
    """The labelling job's flags (`glip-label`, `jobs/label_cc12m.py`, `glip-evaluate --run -- ...`)."""
    p = _JobParser(description=JOB_DESCRIPTION, epilog=JOB_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_setting_flags(p)
    add_invocation_flags(p)
    return p.parse_args(argv)


def flag_name(name: str, field: dataclasses.Field) -> str | None:
    """The flag of a setting, or None for a setting only a config file sets."""
    flag = field.metadata["flag"]
    return None if flag is None else flag or "--" + name.replace("_", "-")


def _shown(field: dataclasses.Field) -> str:
    if field.metadata["shown"] is not None:
        return field.metadata["shown"]
    return "" if field.default is None else str(field.default)


def _plain(text: str) -> str:
    return text.replace("`", "")


def _type(field: dataclasses.Field) -> type:
    kind = str(field.type)
    return float if "float" in kind else int if "int" in kind else str


def add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per setting; each defaults to None (not given) so the YAML file and the
    declared defaults fill in what the command line leaves out."""
    for name, (_, field) in FIELDS.items():
        flag = flag_name(name, field)
        if flag is None:
            continue
        shown = _shown(field)
        help_text = _plain(field.metadata["help"]) + (f" (default: {_plain(shown)})" if shown and shown != "off" else "")
        if field.metadata["shown"] == "(required)":
            help_text = "required: " + _plain(field.metadata["help"])
        if field.metadata["const"] is not None:
            parser.add_argument(flag, dest=name, action="store_const", const=field.metadata["const"], help=help_text)
        else:
            parser.add_argument(flag, dest=name, type=_type(field), help=help_text)


def add_invocation_flags(parser: argparse.ArgumentParser) -> None:
    for flag, _, help_text, kwargs in INVOCATION:
        parser.add_argument(flag, help=_plain(help_text), **kwargs)


def setting_values(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given as flags (None: not given)."""
    return {name: getattr(args, name) for name, (_, field) in FIELDS.items() if flag_name(name, field)}


def markdown_table() -> str:
    """The README's flag table: one table per section, then the invocation's options."""
    out: list[str] = []
    for section, title in SECTION_TITLES.items():
        rows = [(flag_name(n, f), _shown(f), f.metadata["help"]) for n, (s, f) in FIELDS.items() if s == section and flag_name(n, f)]
        out += _table(title, rows)
    out += _table("This invocation", [(flag, shown, help_text) for flag, shown, help_text, _ in INVOCATION])
    return "\n".join(out).rstrip() + "\n"


def _table(title: str, rows: list[tuple[str, str, str]]) -> list[str]:
    lines = [f"**{title}**", "", "| flag | default | what |", "| --- | --- | --- |"]
    lines += [f"| `{flag}` | {shown} | {help_text} |" for flag, shown, help_text in rows]
    return lines + [""]


if __name__ == "__main__":
    sys.stdout.write(markdown_table())
