"""``sct dashboards build [--check]``: the dashboards as JSON in
``dashboards/generated/<language>/``.

One folder a language (``zh``, the default, and ``en``): the queries are the same, only
what Grafana shows differs. The generated files are committed (Grafana's provider reads
the folder of the language chosen); ``--check`` fails when they are stale, and a test runs
it.
"""

from __future__ import annotations

import json
from pathlib import Path

from grafana_foundation_sdk.cog.encoder import JSONEncoder

from dashboards.boards import PLAN, all_boards
from devices.labels import LANGUAGES, Language

GENERATED = Path(__file__).parent / "generated"


def render(target_share: float = 0.6, target_year: int = 2022, language: Language = "zh",
           plan: dict[int, str] | None = None) -> dict[str, str]:
    """file name -> JSON text."""
    out = {}
    for name, builder in all_boards(target_share, target_year, language, plan).items():
        model = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
        out[name] = json.dumps(model, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    return out


def _every_language(target_share: float, target_year: int,
                    plan: dict[int, str] | None) -> dict[str, str]:
    """``<language>/<file>`` -> JSON text."""
    return {f"{lang}/{name}": text for lang in LANGUAGES
            for name, text in render(target_share, target_year, lang, plan or PLAN).items()}


def write(directory: Path = GENERATED, target_share: float = 0.6, target_year: int = 2022,
          plan: dict[int, str] | None = None) -> list[Path]:
    paths = []
    for name, text in _every_language(target_share, target_year, plan).items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


def stale(directory: Path = GENERATED, target_share: float = 0.6, target_year: int = 2022,
          plan: dict[int, str] | None = None) -> list[str]:
    """Names of generated files that differ from what the code builds now (or should not be
    there)."""
    rendered = _every_language(target_share, target_year, plan)
    present = {str(p.relative_to(directory)) for p in directory.glob("**/*.json")}
    wrong = [n for n, text in rendered.items()
             if not (directory / n).exists() or (directory / n).read_text("utf-8") != text]
    return sorted(wrong + sorted(present - set(rendered)))
