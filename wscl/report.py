"""A one-page HTML report of a study: its settings, the tables and the plots (embedded)."""
from __future__ import annotations

import base64
import html
from pathlib import Path

import pandas as pd

from .aggregate import pretty, reported_values
from .studies import Study


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(path.name)}"><figcaption>' \
           f'{html.escape(path.name)}</figcaption></figure>'


def build_report(study: Study, tables_dir: Path, plots_dir: Path, out: Path) -> None:
    cfg = study.config
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>WSCL study {html.escape(cfg['study'])}</title>",
        "<style>body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;font-size:12px;margin-bottom:1em}td,th{border:1px solid #ccc;padding:3px 6px}"
        "img{max-width:100%}figure{display:inline-block;margin:0.5em;max-width:48%}"
        "figcaption{font-size:11px;color:#555}.note{color:#555;font-size:13px}</style></head><body>",
        f"<h1>Wake-Sleep Consolidated Learning: study <code>{html.escape(cfg['study'])}</code></h1>",
        f"<p>Fidelity: <b>{html.escape(', '.join(sorted({k.fidelity for k in study.runs()})))}</b> "
        "(reference = the authors' code "
        "including the behaviours listed in spec §2b; corrected = their evident intent). "
        f"Seeds: {', '.join(map(str, cfg['seeds']))}. Runs: {sum(1 for _ in study.runs())}.</p>",
        f"<p class='note'>Paper values: {html.escape(reported_values()['source'])}</p>",
    ]
    for benchmark, buffer in study.tables():
        stem = f"{benchmark}_buffer{buffer}"
        table = pd.read_csv(tables_dir / f"{stem}.csv")
        parts.append(f"<h2>{html.escape(benchmark)}, buffer {buffer}</h2>")
        parts.append(pretty(table).to_html(index=False, na_rep=""))
        for plot in Study.PLOTS:
            parts.append(_img(plots_dir / f"{stem}_{plot}.png"))
    parts.append("</body></html>")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(parts))
