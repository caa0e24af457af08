"""Every setting and every CLI command is documented in the README (a test fails when one is not)."""

from __future__ import annotations

from pathlib import Path

import click

from lightrelay.cli import main
from lightrelay.settings import Settings

README = (Path(__file__).parent.parent / "README.md").read_text()


def test_every_setting_is_in_the_readme():
    missing = [f"LIGHTRELAY_{name.upper()}" for name, field in Settings.model_fields.items()
               if field.validation_alias is None and f"LIGHTRELAY_{name.upper()}" not in README]
    assert not missing, f"undocumented settings: {missing}"


def _commands(group: click.Group, prefix: str = "") -> list[str]:
    out = []
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            out += _commands(cmd, f"{prefix}{name} ")
        else:
            out.append(f"{prefix}{name}")
    return out


def test_every_command_is_in_the_readme():
    table = README[README.index("| command |"):]
    # every `…` in a row's first cell, e.g. "`user list` / `user set EMAIL …`"
    first_cells = [line.replace("\\|", "/").split("|")[1] for line in table.splitlines() if line.startswith("| `")]
    rows = [part for cell in first_cells for part in cell.split("`")[1::2]]

    def documented(command: str) -> bool:
        *group, name = command.split()
        head = " ".join(group)
        return any(row.startswith(head) and (f" {name}" in f" {row}") for row in rows)

    missing = [c for c in _commands(main) if not documented(c)]
    assert not missing, f"undocumented commands: {missing}"
