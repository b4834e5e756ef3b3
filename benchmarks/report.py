"""Targets, the markdown tables, the JSON file and the PNG chart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from . import stats

NOT_SLOWER_TOLERANCE = 1.05  # "not slower": medians within 5 % (run-to-run noise)


def _ms(value: float | None) -> str:
    if value is None:
        return "n/a"
    if value >= 100:
        return f"{value:.0f} ms"
    if value >= 10:
        return f"{value:.1f} ms"
    return f"{value:.2f} ms"


def _x(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def _signed_ms(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.1f} ms" if abs(value) >= 10 else f"{value:+.2f} ms"


def _met(flag: bool | None) -> str:
    return "n/a" if flag is None else ("**yes**" if flag else "**NO**")


# -- targets ---------------------------------------------------------------------


def evaluate_targets(rows: dict[str, Any]) -> list[dict[str, Any]]:
    """Each promise of SPEC.md / issue 5 with its measured value and verdict."""
    targets: list[dict[str, Any]] = []

    def add(ident: str, text: str, value: str, met: bool | None) -> None:
        targets.append({"id": ident, "target": text, "measured": value, "met": met})

    startup = rows.get("startup")
    if startup:
        ours, off = startup["pass"]["ours"], startup["pass"]["ours-off"]
        on_ms, off_ms = ours["diff_ms"]["median"], off["diff_ms"]["median"]
        add(
            "1",
            "start-up: `python -c pass` with injection on costs <= 1 ms over bare "
            "(median of paired differences, wall clock)",
            f"{_signed_ms(on_ms)} (CPU {_signed_ms(ours['cpu']['diff_ms']['median'])}; "
            f"{ours['pairs']} pairs)",
            on_ms <= 1.0,
        )
        add(
            "1-off",
            "start-up with injection off (TRUSTSTORE_INJECT=0) costs no more than with it on",
            f"{_signed_ms(off_ms)} vs {_signed_ms(on_ms)} "
            f"(CPU {_signed_ms(off['cpu']['diff_ms']['median'])} vs "
            f"{_signed_ms(ours['cpu']['diff_ms']['median'])})",
            off_ms <= on_ms,
        )
    conn = rows.get("connection")
    if conn:
        for client in ("urllib3", "requests"):
            entry = conn[client]["ours"]
            ratio = entry["ratio"]
            add(
                f"2-{client}",
                f"new HTTPS connection ({client}): ours faster than bare (certifi), "
                "hashed CA directory present",
                f"{_x(ratio)} (client CPU {_x(entry['cpu_ratio'])})",
                None if ratio is None else ratio < 1.0,
            )
        entry = conn["urllib3"]["ours-bundle-only"]
        control = conn["urllib3"]["bare-os-bundle"]
        ratio = stats.ratio(entry["ms"]["median"], control["ms"]["median"])
        cpu_ratio = stats.ratio(entry["cpu_ms"]["median"], control["cpu_ms"]["median"])
        add(
            "2-bundle-only",
            "new HTTPS connection (urllib3), OS store without a hashed directory: ours not "
            f"slower than bare urllib3 given the same bundle (<= {NOT_SLOWER_TOLERANCE:.2f}x)",
            f"{_x(ratio)} (client CPU {_x(cpu_ratio)}); vs certifi: {_x(entry['ratio'])}",
            None if ratio is None else ratio <= NOT_SLOWER_TOLERANCE,
        )
    reused = rows.get("reused")
    if reused:
        ratio = reused["ours"]["ratio"]
        add(
            "3",
            "reused context: truststore.SSLContext handshakes/s >= 0.95x plain ssl.SSLContext",
            f"{_x(ratio)} (client CPU per handshake, plain/ours: {_x(reused['ours']['cpu_ratio'])})",
            None if ratio is None else ratio >= 0.95,
        )
    threads = rows.get("threads")
    if threads:
        ratio = threads["ours"]["ratio"]
        add(
            "4",
            "8 threads, one context, 250 ms stalled handshakes: wall time within 10 % of plain ssl",
            _x(ratio),
            None if ratio is None else ratio <= 1.10,
        )
    return targets


# -- tables ------------------------------------------------------------------------


def main_table(rows: dict[str, Any]) -> str:
    head = (
        "| # | Measure | baseline | ours | public truststore | pip-system-certs |\n"
        "|---|---|---|---|---|---|\n"
    )
    lines: list[str] = []
    startup = rows.get("startup")
    if startup:
        for program, label in (
            ("pass", "`python -c pass`"),
            ("import requests", "`import requests`"),
        ):
            data = startup[program]

            def over(name: str, data: dict[str, Any] = data) -> str:
                entry = data[name]
                return (
                    f"{_signed_ms(entry['diff_ms']['median'])} ({_x(entry['ratio'])}; "
                    f"CPU {_signed_ms(entry['cpu']['diff_ms']['median'])})"
                )

            lines.append(
                f"| 1 | start-up {label}, median of paired differences | bare {_ms(data['bare']['ms']['median'])} (CPU {_ms(data['bare']['cpu']['ms']['median'])}) "
                f"| {over('ours')}; injection off {over('ours-off')} | {over('truststore')} | {over('pip-system-certs')} |"
            )
    conn = rows.get("connection")
    if conn:
        for client, label in (
            ("urllib3", "urllib3, new PoolManager per request"),
            ("requests", "requests, new Session per request"),
        ):
            data = conn[client]

            def cell(name: str, data: dict[str, Any] = data) -> str:
                entry = data[name]
                return (
                    f"{_ms(entry['ms']['median'])} ({_x(entry['ratio'])}; "
                    f"CPU {_x(entry['cpu_ratio'])})"
                )

            ours = f"{cell('ours')}; bundle only: {cell('ours-bundle-only')}"
            base = (
                f"bare {_ms(data['bare']['ms']['median'])} "
                f"(CPU {_ms(data['bare']['cpu_ms']['median'])})"
            )
            if "bare-os-bundle" in data:
                base += f"; with the OS bundle: {cell('bare-os-bundle')}"
            lines.append(
                f"| 2 | new HTTPS connection, {label} | {base} | {ours} | {cell('truststore')} | {cell('pip-system-certs')} |"
            )
            first = {n: e["first_ms"]["median"] for n, e in data.items()}
            lines.append(
                f"| 2 | first request of a fresh process, {client} | bare {_ms(first['bare'])} "
                f"| {_ms(first['ours'])} ({_x(data['ours']['first_ratio'])}) "
                f"| {_ms(first['truststore'])} ({_x(data['truststore']['first_ratio'])}) "
                f"| {_ms(first['pip-system-certs'])} ({_x(data['pip-system-certs']['first_ratio'])}) |"
            )
    reused = rows.get("reused")
    if reused:
        ours, public = reused["ours"], reused["truststore"]
        lines.append(
            f"| 3 | reused context, handshakes per second (ratio to plain ssl in the same process) "
            f"| plain ssl {ours['per_second']['plain']:.0f}/s "
            f"| {ours['per_second']['truststore']:.0f}/s ({_x(ours['ratio'])}; "
            f"CPU {_x(ours['cpu_ratio'])}) "
            f"| {public['per_second']['truststore']:.0f}/s ({_x(public['ratio'])}; "
            f"CPU {_x(public['cpu_ratio'])}) | (same as public) |"
        )
    threads = rows.get("threads")
    if threads:
        ours, public = threads["ours"], threads["truststore"]
        lines.append(
            f"| 4 | {threads['threads']} threads, one context, each handshake stalled "
            f"{threads['stall_ms']:.0f} ms: wall time "
            f"| plain ssl {_ms(ours['wall_ms']['plain']['median'])} "
            f"| {_ms(ours['wall_ms']['truststore']['median'])} ({_x(ours['ratio'])}) "
            f"| {_ms(public['wall_ms']['truststore']['median'])} ({_x(public['ratio'])}) | (same as public) |"
        )
    aio = rows.get("asyncio")
    if aio:
        ours, public = aio["ours"], aio["truststore"]

        def stall(entry: dict[str, Any]) -> str:
            return (
                f"{_ms(entry['worst_ms'])} (p99 {_ms(entry['p99_ms'])}; "
                f"{entry['loop_handshakes']} loop handshakes)"
            )

        lines.append(
            "| 5 | asyncio: worst event-loop stall while another thread handshakes (stalled "
            "server) on the same context; the loop's own TLS connections completed "
            f"| plain ssl {stall(ours['plain'])} | {stall(ours['truststore'])} "
            f"| {stall(public['truststore'])} | (same as public) |"
        )
    return head + "\n".join(lines) + "\n"


def scale_table(rows: dict[str, Any]) -> str:
    scale = rows.get("scale")
    if not scale:
        return ""
    index = {(e["size"], e["layout"], e["env"]): e for e in scale["entries"]}
    head = (
        "| CAs | store | context creation: plain / ours first / ours next / public "
        "| new context + handshake: plain / ours / public "
        "| handshake, reused context: plain / ours / public |\n|---|---|---|---|---|\n"
    )
    lines = []
    for size in scale["sizes"]:
        for layout in scale["layouts"]:
            bare, ours, pub = (index.get((size, layout, n)) for n in ("bare", "ours", "truststore"))
            if not (bare and ours and pub):
                continue
            lines.append(
                f"| {size:,} | {layout} "
                f"| {_ms(bare['create_ms'])} / {_ms(ours['cold_create_ms'])} / {_ms(ours['create_ms'])} / {_ms(pub['create_ms'])} "
                f"| {_ms(bare['new_ctx_conn_ms'])} / {_ms(ours['new_ctx_conn_ms'])} / {_ms(pub['new_ctx_conn_ms'])} "
                f"| {_ms(bare['reused_conn_ms'])} / {_ms(ours['reused_conn_ms'])} / {_ms(pub['reused_conn_ms'])} |"
            )
    return head + "\n".join(lines) + "\n"


def targets_table(targets: list[dict[str, Any]]) -> str:
    head = "| target | measured | met |\n|---|---|---|\n"
    return (
        head
        + "\n".join(f"| {t['target']} | {t['measured']} | {_met(t['met'])} |" for t in targets)
        + "\n"
    )


def render_text(results: dict[str, Any]) -> str:
    rows = results["rows"]
    parts = [
        "## Side by side\n",
        "Medians. In brackets: the ratio to the baseline, and the same comparison in CPU time "
        "of the measuring process (start-up: of the child interpreter), which other load on "
        "the machine barely moves.\n\n",
        main_table(rows),
    ]
    scale = scale_table(rows)
    if scale:
        parts += ["\n## Scale (medians; ms)\n", scale]
    parts += ["\n## Targets\n", targets_table(results["targets"])]
    return "".join(parts)


def write_json(results: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)


# -- chart ---------------------------------------------------------------------------

COLORS = {
    "bare": "#8c8c8c",
    "plain": "#8c8c8c",
    "ours": "#1f77b4",
    "ours-off": "#9ecae1",
    "ours-bundle-only": "#6baed6",
    "bare-os-bundle": "#cccccc",
    "truststore": "#ff7f0e",
    "pip-system-certs": "#2ca02c",
}
LABELS = {
    "bare": "bare (certifi)",
    "plain": "plain ssl",
    "ours": "ours",
    "ours-off": "ours, injection off",
    "ours-bundle-only": "ours, bundle only",
    "bare-os-bundle": "bare, OS bundle",
    "truststore": "public truststore",
    "pip-system-certs": "pip-system-certs",
}


def write_chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["rows"]
    fig, axes = plt.subplots(2, 3, figsize=(16, 9.5))
    fig.suptitle(
        "truststore-auto vs the alternatives (medians; lower is better unless noted)\n"
        f"{results['meta']['machine'].get('cpu_model')}, {results['meta']['machine']['nproc']} CPUs, "
        f"Python {results['meta']['python']}, {results['meta']['openssl']}",
        fontsize=11,
    )

    def bars(ax: Any, groups: list[str], series: dict[str, list[float | None]], unit: str) -> None:
        width = 0.8 / max(1, len(series))
        for i, (name, values) in enumerate(series.items()):
            xs = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
            heights = [v if v is not None else 0.0 for v in values]
            drawn = ax.bar(xs, heights, width, label=LABELS.get(name, name), color=COLORS.get(name))
            for rect, value in zip(drawn, values, strict=True):
                if value is not None:
                    ax.annotate(
                        f"{value:.1f}" if abs(value) < 100 else f"{value:.0f}",
                        (rect.get_x() + rect.get_width() / 2, rect.get_height()),
                        ha="center",
                        va="bottom",
                        fontsize=7,
                    )
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels(groups, fontsize=8)
        ax.set_ylabel(unit)
        ax.legend(fontsize=7)

    ax = axes[0][0]
    if "startup" in rows:
        names = ["ours", "ours-off", "truststore", "pip-system-certs"]
        progs = ["pass", "import requests"]
        bars(
            ax,
            ["python -c pass", "import requests"],
            {n: [rows["startup"][p][n]["diff_ms"]["median"] for p in progs] for n in names},
            "ms over bare",
        )
        ax.axhline(1.0, color="red", linewidth=0.8, linestyle="--")
        # symlog: ours' ~1 ms and the alternatives' hundreds of ms on one axis
        ax.set_yscale("symlog", linthresh=1.0)
        ax.set_title("1. start-up overhead vs bare (paired runs; symlog)", fontsize=10)

    ax = axes[0][1]
    if "connection" in rows:
        names = [
            "bare",
            "bare-os-bundle",
            "ours",
            "ours-bundle-only",
            "truststore",
            "pip-system-certs",
        ]
        clients = ["urllib3", "requests"]
        conn = rows["connection"]
        bars(
            ax,
            ["urllib3 new PoolManager", "requests new Session"],
            {
                n: [conn[c][n]["ms"]["median"] if n in conn[c] else None for c in clients]
                for n in names
            },
            "ms per request",
        )
        ax.set_title("2. new HTTPS connection on loopback", fontsize=10)

    ax = axes[0][2]
    if "reused" in rows:
        r = rows["reused"]
        bars(
            ax,
            ["in ours' venv", "in public truststore's venv"],
            {
                "plain": [r["ours"]["per_second"]["plain"], r["truststore"]["per_second"]["plain"]],
                "ours": [r["ours"]["per_second"]["truststore"], None],
                "truststore": [None, r["truststore"]["per_second"]["truststore"]],
            },
            "handshakes per second (higher is better)",
        )
        ax.set_title("3. reused context: handshakes/s", fontsize=10)

    ax = axes[1][0]
    if "threads" in rows:
        t = rows["threads"]
        bars(
            ax,
            ["in ours' venv", "in public truststore's venv"],
            {
                "plain": [
                    t["ours"]["wall_ms"]["plain"]["median"],
                    t["truststore"]["wall_ms"]["plain"]["median"],
                ],
                "ours": [t["ours"]["wall_ms"]["truststore"]["median"], None],
                "truststore": [None, t["truststore"]["wall_ms"]["truststore"]["median"]],
            },
            "wall time, ms",
        )
        ax.axhline(t["stall_ms"], color="red", linewidth=0.8, linestyle="--")
        ax.set_title(
            f"4. {t['threads']} threads x {t['stall_ms']:.0f} ms stalled handshakes", fontsize=10
        )

    ax = axes[1][1]
    if "asyncio" in rows:
        a = rows["asyncio"]
        bars(
            ax,
            ["in ours' venv", "in public truststore's venv"],
            {
                "plain": [a["ours"]["plain"]["worst_ms"], a["truststore"]["plain"]["worst_ms"]],
                "ours": [a["ours"]["truststore"]["worst_ms"], None],
                "truststore": [None, a["truststore"]["truststore"]["worst_ms"]],
            },
            "worst loop stall, ms",
        )
        ax.set_title("5. asyncio loop stall while a thread handshakes", fontsize=10)

    ax = axes[1][2]
    if "scale" in rows:
        entries = rows["scale"]["entries"]
        styles = {"file": "-", "dir": ":", "file+dir": "--"}
        for env in ("bare", "ours", "truststore"):
            for layout in rows["scale"]["layouts"]:
                points = sorted(
                    (e["size"], e["new_ctx_conn_ms"])
                    for e in entries
                    if e["env"] == env and e["layout"] == layout
                )
                if points:
                    ax.plot(
                        [p[0] for p in points],
                        [p[1] for p in points],
                        styles[layout],
                        marker="o",
                        markersize=3,
                        color=COLORS[env],
                        label=f"{LABELS['plain' if env == 'bare' else env]}, {layout}",
                    )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("CA certificates in the store")
        ax.set_ylabel("new context + handshake, ms")
        ax.legend(fontsize=6, ncol=1)
        ax.set_title("6. scale: per-connection cost (new context)", fontsize=10)

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".png.tmp")
    fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    tmp.replace(path)
