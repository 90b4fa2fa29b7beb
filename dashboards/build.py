"""``sct dashboards build [--check]``: the dashboards as JSON in ``dashboards/generated/``.

The generated files are committed (Grafana's provider reads them); ``--check`` fails when
they are stale, and a test runs it.
"""

from __future__ import annotations

import json
from pathlib import Path

from grafana_foundation_sdk.cog.encoder import JSONEncoder

from dashboards.boards import all_boards

GENERATED = Path(__file__).parent / "generated"


def render(target_share: float = 0.6, target_year: int = 2022) -> dict[str, str]:
    """file name -> JSON text."""
    out = {}
    for name, builder in all_boards(target_share, target_year).items():
        model = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
        out[name] = json.dumps(model, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    return out


def write(directory: Path = GENERATED, target_share: float = 0.6,
          target_year: int = 2022) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in render(target_share, target_year).items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


def stale(directory: Path = GENERATED, target_share: float = 0.6,
          target_year: int = 2022) -> list[str]:
    """Names of generated files that differ from what the code builds now."""
    rendered = render(target_share, target_year)
    present = {p.name for p in directory.glob("*.json")}
    wrong = [n for n, text in rendered.items()
             if not (directory / n).exists() or (directory / n).read_text("utf-8") != text]
    return sorted(wrong + sorted(present - set(rendered)))
