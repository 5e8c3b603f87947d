#!/usr/bin/env python3
"""Render a PNG "screenshot" of a Grafana dashboard from live Prometheus data.

Grafana itself is not needed: the script reads the dashboard JSON (by default
deploy/grafana/dashboards/inferd.json), resolves the template variables ($model,
$version: from the command line or the first values Prometheus reports), runs
each panel's PromQL targets against the Prometheus HTTP API
(/api/v1/query_range over the last N minutes; /api/v1/query for instant table
targets) and draws the panels at their gridPos in a dark, Grafana-like theme.

    pip install -r tools/requirements-dashboard.txt
    python tools/render_dashboard.py --prometheus http://127.0.0.1:9090 --minutes 10 \\
        --out docs/img/dashboard.png [--model breast_cancer --version 1]

Supported panel types: row, timeseries (lines, fill, stacking, threshold lines,
dashed/colour overrides, list and table legends), stat (value, thresholds colour,
value mappings, sparkline), table (instant queries, merge/organize
transformations, value mappings, colour-background cells), text. Other types are
drawn as a placeholder. Grafana built-ins $__rate_interval, $__interval,
$__range are substituted as Grafana computes them (--scrape-interval is the
datasource's scrape interval).

Exit status: 0 written; 1 written, but some panels' queries failed (drawn as an
error in the panel); 2 Prometheus unreachable, nothing written.
"""

import argparse
import json
import math
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator  # noqa: E402

DEFAULT_DASHBOARD = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir,
                                 "deploy", "grafana", "dashboards", "inferd.json")

# ---------------------------------------------------------------------------- theme
BG = "#111217"
PANEL_BG = "#181b1f"
BORDER = "#2c2f35"
TEXT = "#ccccdc"
MUTED = "#8e8ea0"
GRID = "#26292f"
ERROR = "#F2495C"
PALETTE = ["#7EB26D", "#EAB839", "#6ED0E0", "#EF843C", "#E24D42", "#1F78C1", "#BA43A9", "#705DA0",
           "#508642", "#CCA300", "#447EBC", "#C15C17", "#890F02", "#0A437C", "#6D1F62", "#584477",
           "#B7DBAB", "#F4D598", "#70DBED", "#F9BA8F", "#F29191", "#82B5D8", "#E5A8E2", "#AEA2E0"]
NAMED = {
    "green": "#73BF69", "red": "#F2495C", "orange": "#FF9830", "yellow": "#FADE2A", "blue": "#5794F2",
    "purple": "#B877D9", "dark-green": "#37872D", "dark-red": "#C4162A", "dark-orange": "#FA6400",
    "dark-yellow": "#E0B400", "dark-blue": "#1F60C4", "dark-purple": "#8F3BB8",
    "semi-dark-green": "#56A64B", "semi-dark-red": "#E02F44", "semi-dark-orange": "#FF780A",
    "semi-dark-yellow": "#F2CC0C", "semi-dark-blue": "#3274D9", "semi-dark-purple": "#A352CC",
    "light-green": "#96D98D", "light-red": "#FF7383", "light-orange": "#FFB357", "light-yellow": "#FFEE52",
    "light-blue": "#8AB8FF", "light-purple": "#CA95E5", "text": TEXT, "white": "#FFFFFF", "black": "#000000",
}

COL_PX = 75          # width of one of the 24 grid columns
ROW_PX = 38          # height of one grid unit (Grafana: 30 px + 8 px margin)
GAP_PX = 8           # space between panels
HEADER_PX = 56       # dashboard title bar
DPI = 100


def color(c, default=TEXT):
    """Grafana colour name, #hex or rgba() -> something matplotlib takes; None for transparent."""
    if not c:
        return default
    if c == "transparent":
        return None
    if c in NAMED:
        return NAMED[c]
    m = re.match(r"rgba?\(([^)]*)\)", c)
    if m:
        parts = [float(x) for x in m.group(1).split(",")]
        rgb = [p / 255 for p in parts[:3]]
        return tuple(rgb + [parts[3] if len(parts) > 3 else 1.0])
    return c


# ---------------------------------------------------------------------------- units
def _num(v, decimals=None):
    if decimals is not None:
        return f"{v:.{int(decimals)}f}"
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 100:
        s = f"{v:.0f}"
    elif a >= 10:
        s = f"{v:.1f}"
    elif a >= 1:
        s = f"{v:.2f}"
    else:
        s = f"{v:.3g}"
    if "." in s and "e" not in s:
        s = s.rstrip("0").rstrip(".")
    return s


def _si(v, decimals=None):
    a = abs(v)
    for div, suf in ((1e12, " T"), (1e9, " B"), (1e6, " Mil"), (1e3, " K")):
        if a >= div:
            return _num(v / div, decimals) + suf
    return _num(v, decimals)


def fmt_value(v, unit="short", decimals=None):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "NaN" if v is not None else "-"
    if isinstance(v, float) and math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    unit = unit or "short"
    if unit == "percentunit":
        return _num(v * 100, decimals) + "%"
    if unit == "percent":
        return _num(v, decimals) + "%"
    if unit in ("s", "ms", "µs", "ns"):
        secs = v * {"s": 1, "ms": 1e-3, "µs": 1e-6, "ns": 1e-9}[unit]
        a = abs(secs)
        if a == 0:
            return "0 s"
        if a < 1e-6:
            return _num(secs * 1e9, decimals) + " ns"
        if a < 1e-3:
            return _num(secs * 1e6, decimals) + " µs"
        if a < 1:
            return _num(secs * 1e3, decimals) + " ms"
        if a < 60:
            return _num(secs, decimals) + " s"
        if a < 3600:
            return _num(secs / 60, decimals) + " min"
        return _num(secs / 3600, decimals) + " hour"
    if unit == "reqps":
        return _si(v, decimals) + " req/s"
    if unit == "ops":
        return _si(v, decimals) + " ops/s"
    if unit == "bytes":
        a = abs(v)
        for div, suf in ((2 ** 30, " GiB"), (2 ** 20, " MiB"), (2 ** 10, " KiB")):
            if a >= div:
                return _num(v / div, decimals) + suf
        return _num(v, decimals) + " B"
    if unit == "none":
        return _num(v, decimals)
    if unit == "short" or not unit:
        return _si(v, decimals)
    return _si(v, decimals) + " " + unit


# ---------------------------------------------------------------------------- Prometheus
class PromError(Exception):
    pass


class Prometheus:
    def __init__(self, base, timeout=30):
        self.base = base.rstrip("/")
        self.timeout = timeout

    def _call(self, path, params, post=True):
        url = self.base + path
        data = urllib.parse.urlencode(params, doseq=True)
        if post:
            req = urllib.request.Request(url, data=data.encode(),
                                         headers={"Content-Type": "application/x-www-form-urlencoded"})
        else:
            req = urllib.request.Request(url + ("?" + data if data else ""))
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                body = json.load(r)
        except urllib.error.HTTPError as e:  # Prometheus answers 400/422 with a JSON error
            try:
                body = json.load(e)
            except Exception:
                raise PromError(f"HTTP {e.code} from {url}") from None
        if body.get("status") != "success":
            raise PromError(body.get("error") or f"query failed: {body}")
        return body["data"]

    def query_range(self, expr, start, end, step):
        d = self._call("/api/v1/query_range", {"query": expr, "start": start, "end": end, "step": step})
        out = []
        for s in d.get("result", []):
            pts = [(float(t), float(v)) for t, v in s.get("values", [])]
            out.append((s["metric"], pts))
        return out

    def query(self, expr, t):
        d = self._call("/api/v1/query", {"query": expr, "time": t})
        if d["resultType"] == "scalar":
            return [({}, float(d["result"][1]))]
        return [(s["metric"], float(s["value"][1])) for s in d.get("result", [])]

    def label_values(self, label, match=None):
        params = {"match[]": [match]} if match else {}
        return self._call(f"/api/v1/label/{urllib.parse.quote(label)}/values", params, post=False)


# ---------------------------------------------------------------------------- templating
_REGEX_SPECIAL = set("\\^$.|?*+()[]{}")


def regex_escape(v):
    # A variable used inside a PromQL string literal with =~: escape regex metacharacters
    # (the backslash itself doubled for the PromQL string), as Grafana does.
    return "".join("\\\\" + c if c in _REGEX_SPECIAL else c for c in v)


def prom_duration(seconds):
    seconds = max(1, int(round(seconds)))
    for div, suf in ((86400, "d"), (3600, "h"), (60, "m")):
        if seconds % div == 0:
            return f"{seconds // div}{suf}"
    return f"{seconds}s"


def substitute(text, variables):
    def repl(m):
        name = m.group(1) or m.group(2) or m.group(3)
        return variables.get(name, m.group(0))

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)", repl, text)


def resolve_variables(dash, prom, cli):
    """{name: value as substituted} and {name: value shown in the header}."""
    values, shown = {}, {}
    for v in dash.get("templating", {}).get("list", []):
        name = v.get("name")
        q = v.get("query")
        if isinstance(q, dict):
            q = q.get("query", "")
        if name in cli and cli[name] is not None:
            pick = cli[name]
        elif v.get("type") == "custom":
            opts = [o.strip() for o in (q or "").split(",") if o.strip()]
            pick = opts[0] if opts else ""
        elif v.get("type") == "constant":
            pick = q or ""
        elif v.get("type") == "query":
            q = substitute(q or "", values)
            m = re.match(r"^\s*label_values\((.*),\s*(\w+)\s*\)\s*$", q) or \
                re.match(r"^\s*label_values\(\s*()(\w+)\s*\)\s*$", q)
            if not m:
                raise SystemExit(f"variable ${name}: only label_values(...) queries are supported, got {q!r}")
            opts = prom.label_values(m.group(2), m.group(1).strip() or None)
            if v.get("regex"):
                opts = [o for o in opts if re.search(v["regex"].strip("/"), o)]
            if v.get("sort") in (3, 4):
                opts.sort(key=lambda o: (float(o) if re.match(r"^-?\d+(\.\d+)?$", o) else math.inf, o),
                          reverse=v["sort"] == 4)
            elif v.get("sort") in (1, 2):
                opts.sort(reverse=v["sort"] == 2)
            if not opts:
                print(f"warning: variable ${name}: Prometheus reports no values for {q}", file=sys.stderr)
            pick = opts[0] if opts else ""
        else:
            pick = ""
        if pick in ("All", "$__all") and v.get("includeAll"):
            values[name] = v.get("allValue") or ".*"
            shown[name] = "All"
        else:
            values[name] = regex_escape(pick)
            shown[name] = pick
    return values, shown


# ---------------------------------------------------------------------------- field config
def field_config(panel, display_name=None):
    """defaults merged with the overrides matching display_name (flattened 'custom.x' keys)."""
    fc = panel.get("fieldConfig", {})
    d = json.loads(json.dumps(fc.get("defaults", {})))
    if display_name is None:
        return d
    for o in fc.get("overrides", []):
        m = o.get("matcher", {})
        opt = m.get("options", "")
        hit = False
        if m.get("id") == "byName":
            hit = opt == display_name
        elif m.get("id") == "byRegexp":
            pat = opt[1:-1] if len(opt) > 1 and opt.startswith("/") and opt.endswith("/") else opt
            hit = re.search(pat, display_name) is not None
        if not hit:
            continue
        for p in o.get("properties", []):
            key, val = p.get("id", ""), p.get("value")
            if key.startswith("custom."):
                d.setdefault("custom", {})[key[7:]] = val
            else:
                d[key] = val
    return d


def threshold_color(cfg, v):
    steps = cfg.get("thresholds", {}).get("steps", [])
    c = None
    for s in steps:
        if s.get("value") is None or (v is not None and not math.isnan(v) and v >= s["value"]):
            c = s.get("color")
    return color(c, NAMED["green"]) if c != "transparent" else TEXT


def apply_mappings(cfg, v):
    """(text, colour or None) when a value mapping matches."""
    for m in cfg.get("mappings", []) or []:
        t = m.get("type")
        if t == "value":
            for key, res in (m.get("options") or {}).items():
                try:
                    if v is not None and float(key) == v:
                        return res.get("text"), color(res.get("color")) if res.get("color") else None
                except ValueError:
                    pass
        elif t == "range":
            o = m.get("options") or {}
            lo, hi = o.get("from"), o.get("to")
            if v is not None and (lo is None or v >= lo) and (hi is None or v <= hi):
                r = o.get("result", {})
                return r.get("text"), color(r.get("color")) if r.get("color") else None
    return None


def legend_name(fmt, labels, expr):
    if fmt and fmt != "__auto":
        return re.sub(r"\{\{\s*([\w.]+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt).strip()
    name = labels.get("__name__", "")
    rest = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
    if name or rest:
        return name + ("{" + rest + "}" if rest else "")
    return expr


# ---------------------------------------------------------------------------- renderer
class Renderer:
    def __init__(self, dash, prom, args):
        self.dash = dash
        self.prom = prom
        self.args = args
        self.end = time.time()
        self.range_s = args.minutes * 60
        raw = self.range_s / args.points
        nice = [1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900, 1200, 1800, 3600, 7200, 10800, 21600, 43200, 86400]
        step = next((n for n in nice if n >= raw), nice[-1])
        self.step = max(step, args.min_step if args.min_step else args.scrape_interval)
        self.end = math.floor(self.end / self.step) * self.step
        self.start = self.end - self.range_s
        scrape = args.scrape_interval
        self.builtins = {
            "__rate_interval": prom_duration(max(self.step + scrape, 4 * scrape)),
            "__interval": prom_duration(self.step),
            "__interval_ms": str(int(self.step * 1000)),
            "__range": prom_duration(self.range_s),
            "__range_s": str(int(self.range_s)),
            "__range_ms": str(int(self.range_s * 1000)),
        }
        self.vars, self.shown = resolve_variables(dash, prom, {"model": args.model, "version": args.version})
        self.vars.update(self.builtins)
        self.errors = 0

    # ------------------------------------------------------------------ layout
    def panels(self):
        out = []
        for p in self.dash.get("panels", []):
            out.append(p)
            if p.get("type") == "row" and not p.get("collapsed"):
                out.extend(p.get("panels", []) or [])
        return out

    def render(self, path):
        panels = self.panels()
        bottom = max((p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels if "gridPos" in p), default=1)
        self.W = 24 * COL_PX + GAP_PX
        self.H = HEADER_PX + bottom * ROW_PX + GAP_PX
        self.fig = plt.figure(figsize=(self.W / DPI, self.H / DPI), dpi=DPI, facecolor=BG)
        self.header()
        for p in panels:
            try:
                self.panel(p)
            except PromError as e:
                self.errors += 1
                self.placeholder(p, f"query error: {e}", ERROR)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.fig.savefig(path, dpi=DPI, facecolor=BG)
        plt.close(self.fig)

    def frac(self, x, y, w, h):
        """Pixel box (top-left origin) -> figure fraction rect."""
        return [x / self.W, 1 - (y + h) / self.H, w / self.W, h / self.H]

    def box(self, p):
        g = p["gridPos"]
        x = g["x"] * COL_PX + GAP_PX
        y = HEADER_PX + g["y"] * ROW_PX + GAP_PX
        return x, y, g["w"] * COL_PX - GAP_PX, g["h"] * ROW_PX - GAP_PX

    def text(self, x, y, s, **kw):
        kw.setdefault("color", TEXT)
        kw.setdefault("fontsize", 9)
        kw.setdefault("va", "top")
        return self.fig.text(x / self.W, 1 - y / self.H, s, **kw)

    def header(self):
        d = self.dash
        self.text(GAP_PX + 4, 14, d.get("title", "dashboard"), fontsize=16, fontweight="bold")
        vars_ = "    ".join(f"{k} = {v}" for k, v in self.shown.items())
        t0 = datetime.fromtimestamp(self.start).strftime("%Y-%m-%d %H:%M:%S")
        t1 = datetime.fromtimestamp(self.end).strftime("%H:%M:%S")
        self.text(GAP_PX + 4, 38, vars_, fontsize=10, color=MUTED)
        self.text(self.W - GAP_PX - 4, 14, f"{t0} to {t1}  (last {self.args.minutes:g} min, step {self.step:g}s)",
                  fontsize=10, ha="right", color=MUTED)
        self.text(self.W - GAP_PX - 4, 38, f"rendered from {self.prom.base}", fontsize=9, ha="right", color=MUTED)

    def frame(self, p):
        x, y, w, h = self.box(p)
        self.fig.patches.append(Rectangle((x / self.W, 1 - (y + h) / self.H), w / self.W, h / self.H,
                                          transform=self.fig.transFigure, facecolor=PANEL_BG, edgecolor=BORDER,
                                          linewidth=1, zorder=-1))
        title = substitute(p.get("title", ""), self.vars)
        self.text(x + 8, y + 7, title, fontsize=10, fontweight="bold")
        return x, y, w, h

    def placeholder(self, p, msg, col=MUTED):
        x, y, w, h = self.frame(p)
        self.text(x + w / 2, y + h / 2, msg, ha="center", va="center", color=col, fontsize=9, wrap=True)

    def panel(self, p):
        t = p.get("type")
        if t == "row":
            x, y, w, h = self.box(p)
            self.text(x + 2, y + 4, ("▸ " if p.get("collapsed") else "▾ ") + substitute(p.get("title", ""), self.vars),
                      fontsize=12, fontweight="bold")
            self.fig.add_artist(Line2D([x / self.W, (x + w) / self.W], [1 - (y + h) / self.H] * 2,
                                       color=BORDER, linewidth=1))
        elif t in ("timeseries", "graph"):
            self.timeseries(p)
        elif t in ("stat", "gauge", "bargauge", "singlestat"):
            self.stat(p)
        elif t == "table":
            self.table(p)
        elif t == "text":
            x, y, w, h = self.frame(p)
            content = p.get("options", {}).get("content", "")
            self.text(x + 10, y + 30, re.sub(r"[#*`]", "", content)[:2000], fontsize=9, wrap=True)
        else:
            self.placeholder(p, f"panel type {t!r} is not rendered")

    # ------------------------------------------------------------------ data
    def series(self, p):
        """[(display name, labels, [(t, v)], target)] over the panel's targets (range queries)."""
        out = []
        for t in p.get("targets", []):
            if t.get("hide") or not t.get("expr"):
                continue
            expr = substitute(t["expr"], self.vars)
            for labels, pts in self.prom.query_range(expr, self.start, self.end, self.step):
                out.append((legend_name(substitute(t.get("legendFormat", ""), self.vars), labels, expr),
                            labels, pts, t))
        return out

    # ------------------------------------------------------------------ timeseries
    def timeseries(self, p):
        x, y, w, h = self.frame(p)
        data = self.series(p)
        defaults = field_config(p)
        opts = p.get("options", {})
        lg = opts.get("legend", {})
        show_legend = lg.get("showLegend", lg.get("show", True)) and data
        calcs = lg.get("calcs", []) or []
        right = show_legend and lg.get("placement") == "right"
        table = lg.get("displayMode") == "table"

        # series -> style
        styled = []
        for i, (name, labels, pts, tgt) in enumerate(data):
            cfg = field_config(p, name)
            cm = cfg.get("color", {})
            col = color(cm.get("fixedColor")) if cm.get("mode") == "fixed" else PALETTE[i % len(PALETTE)]
            custom = cfg.get("custom", {})
            ls = "--" if (custom.get("lineStyle") or {}).get("fill") in ("dash", "dot") else "-"
            if (custom.get("lineStyle") or {}).get("fill") == "dot":
                ls = ":"
            vals = [v for _, v in pts if not math.isnan(v)]
            last = vals[-1] if vals else float("nan")
            stats = {"lastNotNull": last, "last": last, "max": max(vals) if vals else float("nan"),
                     "min": min(vals) if vals else float("nan"),
                     "mean": sum(vals) / len(vals) if vals else float("nan")}
            hidden = (custom.get("hideFrom") or {}).get("legend")
            styled.append(dict(name=cfg.get("displayName") or name, pts=pts, color=col, ls=ls,
                               lw=custom.get("lineWidth", 1) or 1, fill=custom.get("fillOpacity", 0) or 0,
                               stack=(custom.get("stacking") or {}).get("mode", "none") != "none",
                               stats=stats, unit=cfg.get("unit", defaults.get("unit")),
                               decimals=cfg.get("decimals"), hidden=hidden))

        # plot area (pixels) inside the panel
        pad_l, pad_t = 62, 30
        legend_w = 0
        legend_h = 0
        if show_legend and right:
            legend_w = min(int(w * 0.42), 360)
        elif show_legend:
            legend_lines = self._legend_lines(styled, w - 24, calcs)
            legend_h = min(len(legend_lines), 4) * 15 + 6
        px, py = x + pad_l, y + pad_t
        pw = w - pad_l - 12 - legend_w
        ph = h - pad_t - 24 - legend_h
        if pw < 40 or ph < 30:
            return
        ax = self.fig.add_axes(self.frac(px, py, pw, ph), facecolor=PANEL_BG)
        self._style_axes(ax)
        unit = defaults.get("unit", "short")
        if not data:
            ax.set_xticks([])
            ax.set_yticks([])
            ax.text(0.5, 0.5, "No data", transform=ax.transAxes, ha="center", va="center", color=MUTED, fontsize=11)
            for s in ax.spines.values():
                s.set_visible(False)
            return

        stack_base = {}
        for s in styled:
            ts_, vs = self._gapped(s["pts"])
            if s["stack"]:
                base = [stack_base.get(t, 0.0) for t in ts_]
                top = [b + (0 if math.isnan(v) else v) if not math.isnan(v) else float("nan")
                       for b, v in zip(base, vs)]
                for t, v in zip(ts_, top):
                    if not math.isnan(v):
                        stack_base[t] = v
            else:
                base, top = [0.0] * len(vs), vs
            ax.plot(ts_, top, color=s["color"], linestyle=s["ls"], linewidth=s["lw"] * 1.1, zorder=3)
            if s["fill"]:
                ax.fill_between(ts_, base, top, color=s["color"], alpha=s["fill"] / 100 * 0.9, linewidth=0, zorder=2)

        ax.set_xlim(self.start, self.end)
        lo, hi = ax.get_ylim()
        if defaults.get("min") is not None:
            lo = defaults["min"]
        elif lo > 0 and all(not s["stack"] for s in styled):
            lo = min(lo, 0) if hi > 0 and lo < hi * 0.2 else lo
        if defaults.get("max") is not None:
            hi = defaults["max"]
        if hi <= lo:
            hi = lo + 1
        ax.set_ylim(lo, hi)

        tstyle = ((defaults.get("custom") or {}).get("thresholdsStyle") or {}).get("mode", "off")
        if tstyle != "off":
            for st in defaults.get("thresholds", {}).get("steps", []):
                c = color(st.get("color"))
                if st.get("value") is None or c is None:
                    continue
                if lo <= st["value"] <= hi:
                    ax.axhline(st["value"], color=c, linestyle="--" if "dash" in tstyle else "-",
                               linewidth=1, alpha=0.9, zorder=1)

        ax.yaxis.set_major_locator(MaxNLocator(nbins=max(2, int(ph / 40)), min_n_ticks=2))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt_value(v, unit)))
        self._time_axis(ax, pw)

        if show_legend:
            entries = [s for s in styled if not s["hidden"]]
            if right:
                self._legend_right(entries, x + w - legend_w - 6, py, legend_w, ph + 16, calcs, table, unit)
            else:
                self._legend_bottom(entries, x + 12, y + h - legend_h - 4, w - 24, legend_h, calcs, unit)

    def _time_axis(self, ax, width_px):
        """Local-time ticks at a round interval, about one per 110 px."""
        want = max(2, int(width_px / 110))
        nice = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400]
        every = next((n for n in nice if self.range_s / n <= want), nice[-1])
        off = datetime.fromtimestamp(self.start).astimezone().utcoffset().total_seconds()
        first = math.ceil((self.start + off) / every) * every - off
        ticks = [first + i * every for i in range(int((self.end - first) / every) + 1)]
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        fmt = "%H:%M:%S" if every < 60 else "%H:%M" if every < 86400 else "%m-%d"
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: datetime.fromtimestamp(v).strftime(fmt)))

    def _gapped(self, pts):
        """Times and values with NaN inserted where samples are missing, so lines break."""
        ts_, vs = [], []
        prev = None
        for t, v in pts:
            if prev is not None and t - prev > 1.5 * self.step:
                ts_.append(prev + self.step)
                vs.append(float("nan"))
            ts_.append(t)
            vs.append(v)
            prev = t
        return ts_, vs

    def _style_axes(self, ax):
        ax.tick_params(colors=MUTED, labelsize=7.5, length=0, pad=4)
        for s in ax.spines.values():
            s.set_visible(False)
        ax.grid(True, color=GRID, linewidth=0.8, zorder=0)
        ax.set_axisbelow(True)

    def _label(self, s, calcs, unit):
        extra = "  ".join(f"{c.replace('lastNotNull', 'last')}: {fmt_value(s['stats'].get(c), s['unit'] or unit, s['decimals'])}"
                          for c in calcs if c in s["stats"])
        return s["name"] + ("   " + extra if extra else "")

    def _legend_lines(self, styled, width, calcs):
        lines, cur, used = [], [], 0
        for s in styled:
            if s["hidden"]:
                continue
            wpx = 22 + 6.2 * len(self._label(s, calcs, "")) + 14
            if cur and used + wpx > width:
                lines.append(cur)
                cur, used = [], 0
            cur.append(s)
            used += wpx
        if cur:
            lines.append(cur)
        return lines

    def _swatch(self, x, y, col, ls):
        self.fig.add_artist(Line2D([x / self.W, (x + 14) / self.W], [1 - y / self.H] * 2, color=col,
                                   linewidth=2.5 if ls == "-" else 1.6, linestyle=ls))

    def _legend_bottom(self, entries, x, y, w, h, calcs, unit):
        lines = self._legend_lines(entries, w, calcs)
        shown = 0
        for i, line in enumerate(lines[:4]):
            cx = x
            ly = y + 6 + i * 15
            for s in line:
                if i == 3 and s is line[-1] and len(lines) > 4:
                    break
                self._swatch(cx, ly + 5, s["color"], s["ls"])
                label = self._label(s, calcs, unit)
                self.text(cx + 18, ly, label, fontsize=7.5)
                cx += 22 + 6.2 * len(label) + 14
                shown += 1
        if shown < len(entries):
            self.text(x + w, y + 6 + 3 * 15, f"+{len(entries) - shown} more", fontsize=7.5, color=MUTED, ha="right")

    def _legend_right(self, entries, x, y, w, h, calcs, table, unit):
        key = calcs[0] if calcs else None
        if key:
            entries = sorted(entries, key=lambda s: -s["stats"][key] if not math.isnan(s["stats"][key]) else math.inf)
        col_w = 62
        name_w = w - 22 - col_w * len(calcs)
        ly = y
        if table and calcs:
            self.text(x + 18, ly, "Name", fontsize=7.5, color=MUTED)
            for j, c in enumerate(calcs):
                self.text(x + 22 + name_w + col_w * (j + 1) - 4, ly, c.replace("lastNotNull", "Last *").title()
                          if c != "lastNotNull" else "Last *", fontsize=7.5, color=MUTED, ha="right")
            ly += 15
        rows = max(1, int((y + h - ly) / 14))
        more = len(entries) > rows
        for i, s in enumerate(entries[:rows - 1 if more else rows]):
            self._swatch(x, ly + 5, s["color"], s["ls"])
            name = s["name"]
            max_chars = int(name_w / 5.6)
            if len(name) > max_chars:
                name = name[:max_chars - 1] + "…"
            self.text(x + 18, ly, name, fontsize=7.5)
            for j, c in enumerate(calcs):
                self.text(x + 22 + name_w + col_w * (j + 1) - 4, ly,
                          fmt_value(s["stats"].get(c), s["unit"] or unit, s["decimals"]), fontsize=7.5, ha="right")
            ly += 14
        if more:
            self.text(x + 18, ly, f"+{len(entries) - rows + 1} more", fontsize=7.5, color=MUTED)

    # ------------------------------------------------------------------ stat
    def stat(self, p):
        x, y, w, h = self.frame(p)
        data = self.series(p)
        if not data:
            self.text(x + w / 2, y + h / 2 + 8, "No data", ha="center", va="center", color=MUTED, fontsize=12)
            return
        data = data[:4]
        cw = w / len(data)
        for i, (name, labels, pts, tgt) in enumerate(data):
            cfg = field_config(p, name)
            vals = [v for _, v in pts if not math.isnan(v)]
            v = vals[-1] if vals else float("nan")
            mapped = apply_mappings(cfg, v)
            txt = mapped[0] if mapped and mapped[0] else fmt_value(v, cfg.get("unit", "short"), cfg.get("decimals"))
            col = (mapped[1] if mapped and mapped[1] else None) or threshold_color(cfg, v)
            cx = x + cw * i
            if len(pts) > 1 and vals and p.get("options", {}).get("graphMode", "area") != "none":
                ax = self.fig.add_axes(self.frac(cx + 2, y + h * 0.55, cw - 4, h * 0.45 - 2), facecolor=PANEL_BG)
                ax.axis("off")
                ts_, vs = self._gapped(pts)
                ax.plot(ts_, vs, color=col, linewidth=1, alpha=0.8)
                ax.fill_between(ts_, min(vals), vs, color=col, alpha=0.15, linewidth=0)
                lo, hi = min(vals), max(vals)
                ax.set_ylim(lo - (hi - lo or 1) * 0.05, hi + (hi - lo or 1) * 1.6)
                ax.set_xlim(self.start, self.end)
            size = max(12, min(30, h / 3.2, cw / max(4, len(txt)) * 1.5))
            self.text(cx + cw / 2, y + h * 0.56, txt, ha="center", va="center", color=col, fontsize=size,
                      fontweight="bold")
            if len(data) > 1:
                self.text(cx + cw / 2, y + h - 10, name, ha="center", va="bottom", color=MUTED, fontsize=7.5)

    # ------------------------------------------------------------------ table
    def table(self, p):
        x, y, w, h = self.frame(p)
        rows, columns = self._table_data(p)
        if not rows:
            self.text(x + w / 2, y + h / 2, "No data", ha="center", va="center", color=MUTED, fontsize=11)
            return
        # Grafana sorts by one column (options.sortBy); ties keep the label order
        def sort_key(col):
            numeric = any(isinstance(r.get(col), float) for r in rows)

            def key(r):
                v = r.get(col)
                if numeric:
                    return v if isinstance(v, float) and not math.isnan(v) else -math.inf
                return "" if v is None else str(v)
            return key

        label_cols = [c for c in columns if not any(isinstance(r.get(c), float) for r in rows)]
        rows.sort(key=lambda r: tuple(str(r.get(c, "")) for c in label_cols))
        for sb in (p.get("options", {}).get("sortBy", []) or [])[:1]:
            if sb.get("displayName") in columns:
                rows.sort(key=sort_key(sb["displayName"]), reverse=bool(sb.get("desc")))
        cfgs = {c: field_config(p, c) for c in columns}
        top = y + 30
        row_h = 19
        inner_w = w - 16
        # column widths: text columns get what numbers leave
        num_cols = [c for c in columns if any(isinstance(r.get(c), float) for r in rows)]
        txt_cols = [c for c in columns if c not in num_cols]
        num_w = min(80, inner_w / max(1, len(columns)))
        txt_w = (inner_w - num_w * len(num_cols)) / max(1, len(txt_cols))
        widths = {c: (num_w if c in num_cols else txt_w) for c in columns}
        cx = x + 8
        for c in columns:
            right = c in num_cols and not cfgs[c].get("mappings")
            self.text(cx + (widths[c] - 6 if right else 4), top, c, fontsize=8, color=MUTED,
                      ha="right" if right else "left", fontweight="bold")
            cx += widths[c]
        self.fig.add_artist(Line2D([(x + 8) / self.W, (x + w - 8) / self.W], [1 - (top + 15) / self.H] * 2,
                                   color=BORDER, linewidth=1))
        max_rows = int((y + h - top - 22) / row_h)
        more = len(rows) > max_rows
        for i, r in enumerate(rows[:max_rows - 1 if more else max_rows]):
            ry = top + 19 + i * row_h
            cx = x + 8
            for c in columns:
                cfg = cfgs[c]
                v = r.get(c)
                right = c in num_cols
                if isinstance(v, float):
                    mapped = apply_mappings(cfg, v)
                    txt = mapped[0] if mapped and mapped[0] else fmt_value(v, cfg.get("unit", "none"),
                                                                           cfg.get("decimals"))
                    mcol = mapped[1] if mapped and mapped[1] else None
                    if mapped and mapped[0]:
                        right = False  # mapped text reads as a label
                else:
                    txt, mcol = ("" if v is None else str(v)), None
                cell = ((cfg.get("custom") or {}).get("cellOptions") or {}).get("type", "auto")
                fg = TEXT
                if cell == "color-background" and isinstance(v, float):
                    bgc = mcol or threshold_color(cfg, v)
                    self.fig.patches.append(Rectangle(((cx + 1) / self.W, 1 - (ry + row_h - 3) / self.H),
                                                      (widths[c] - 2) / self.W, (row_h - 2) / self.H,
                                                      transform=self.fig.transFigure, facecolor=bgc, alpha=0.85,
                                                      edgecolor="none", zorder=1))
                    fg = "#0b0c0e"
                elif cell == "color-text" and isinstance(v, float):
                    fg = mcol or threshold_color(cfg, v)
                max_chars = int(widths[c] / 5.8)
                if len(txt) > max_chars:
                    txt = txt[:max(1, max_chars - 1)] + "…"
                self.text(cx + (widths[c] - 6 if right else 4), ry + 2, txt, fontsize=8, color=fg,
                          ha="right" if right else "left", zorder=2)
                cx += widths[c]
        if more:
            self.text(x + 12, top + 19 + (max_rows - 1) * row_h + 2, f"… {len(rows) - max_rows + 1} more rows",
                      fontsize=8, color=MUTED)

    def _table_data(self, p):
        frames = []
        for t in p.get("targets", []):
            if t.get("hide") or not t.get("expr"):
                continue
            expr = substitute(t["expr"], self.vars)
            ref = t.get("refId", "A")
            if t.get("instant") or t.get("format") == "table":
                res = self.prom.query(expr, self.end)
            else:
                res = [(lab, next((v for _, v in reversed(pts) if not math.isnan(v)), float("nan")))
                       for lab, pts in self.prom.query_range(expr, self.start, self.end, self.step)]
            frames.append((ref, res))
        if not frames:
            return [], []
        multi = len(frames) > 1
        transforms = {tr.get("id"): tr.get("options", {}) for tr in p.get("transformations", [])}
        label_cols = []
        for _, res in frames:
            for lab, _ in res:
                for k in lab:
                    if k != "__name__" and k not in label_cols:
                        label_cols.append(k)
        merged = {}
        value_cols = []
        for ref, res in frames:
            vc = f"Value #{ref}" if multi else "Value"
            value_cols.append(vc)
            for lab, v in res:
                key = tuple(lab.get(k, "") for k in label_cols)
                row = merged.setdefault(key, {"Time": self.end, **{k: lab.get(k, "") for k in label_cols}})
                row[vc] = v
        # Rows of all queries are merged on their labels (Grafana's "merge" transformation;
        # without it Grafana would show one frame per query).
        rows = list(merged.values())
        columns = ["Time"] + label_cols + value_cols
        org = transforms.get("organize")
        if org:
            excl = {k for k, v in (org.get("excludeByName") or {}).items() if v}
            idx = org.get("indexByName") or {}
            columns = [c for c in columns if c not in excl]
            order = {c: i for i, c in enumerate(columns)}
            columns.sort(key=lambda c: idx.get(c, 1000 + order[c]))
            ren = org.get("renameByName") or {}
            rows = [{ren.get(k, k): v for k, v in r.items()} for r in rows]
            columns = [ren.get(c, c) for c in columns]
        else:
            columns = [c for c in columns if c != "Time"]
        return rows, columns


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prometheus", default="http://127.0.0.1:9090", help="Prometheus base URL")
    ap.add_argument("--dashboard", default=os.path.normpath(DEFAULT_DASHBOARD), help="Grafana dashboard JSON")
    ap.add_argument("--minutes", type=float, default=10, help="time range: the last N minutes (default 10)")
    ap.add_argument("--out", required=True, help="PNG to write")
    ap.add_argument("--model", help="value of $model (default: first value Prometheus reports)")
    ap.add_argument("--version", help="value of $version (default: first value; 'All' for every version)")
    ap.add_argument("--scrape-interval", type=float, default=15,
                    help="the datasource's scrape interval in seconds, for $__rate_interval (default 15)")
    ap.add_argument("--min-step", type=float, default=None,
                    help="lower bound of the query step in seconds (default: the scrape interval)")
    ap.add_argument("--points", type=int, default=240, help="about how many points per series (default 240)")
    ap.add_argument("--timeout", type=float, default=30, help="HTTP timeout per query in seconds")
    args = ap.parse_args(argv)

    with open(args.dashboard, encoding="utf-8") as f:
        dash = json.load(f)
    prom = Prometheus(args.prometheus, args.timeout)
    try:
        prom.label_values("__name__")
    except (urllib.error.URLError, OSError, PromError) as e:
        print(f"error: cannot query Prometheus at {args.prometheus}: {e}", file=sys.stderr)
        return 2
    r = Renderer(dash, prom, args)
    r.render(args.out)
    print(f"wrote {args.out} ({r.W}x{r.H} px, {len(r.panels())} panels, step {r.step:g}s"
          + (f", {r.errors} panel(s) with query errors" if r.errors else "") + ")")
    return 1 if r.errors else 0


if __name__ == "__main__":
    sys.exit(main())
