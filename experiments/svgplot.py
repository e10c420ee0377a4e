"""Small hand-written SVG charts for docs/experiments.md (no matplotlib on this machine):
line charts with optional error bars and grouped bar charts with error bars. Standard library only."""
import html

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf"]


def _esc(s):
    return html.escape(str(s), quote=True)


class Canvas:
    def __init__(self, w, h, title):
        self.w, self.h = w, h
        self.parts = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" '
                      'font-family="sans-serif" font-size="12">' % (w, h, w, h),
                      '<rect width="100%%" height="100%%" fill="white"/>',
                      '<text x="%d" y="18" text-anchor="middle" font-size="14" font-weight="bold">%s</text>'
                      % (w // 2, _esc(title))]

    def add(self, s):
        self.parts.append(s)

    def text(self, x, y, s, anchor="middle", size=12, rotate=None, color="black"):
        tr = ' transform="rotate(%d %.1f %.1f)"' % (rotate, x, y) if rotate else ""
        self.add('<text x="%.1f" y="%.1f" text-anchor="%s" font-size="%d" fill="%s"%s>%s</text>'
                 % (x, y, anchor, size, color, tr, _esc(s)))

    def line(self, x1, y1, x2, y2, color="black", width=1, dash=None):
        d = ' stroke-dasharray="%s"' % dash if dash else ""
        self.add('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="%g"%s/>'
                 % (x1, y1, x2, y2, color, width, d))

    def save(self, path):
        with open(path, "w") as f:
            f.write("\n".join(self.parts + ["</svg>"]) + "\n")


def _ticks(lo, hi, n=5):
    step = (hi - lo) / n
    return [lo + i * step for i in range(n + 1)]


def _axes(c, box, xlo, xhi, ylo, yhi, xlabel, ylabel, xticks=None, xticklabels=None, yfmt="%.2f"):
    x0, y0, x1, y1 = box
    sx = lambda x: x0 + (x - xlo) / (xhi - xlo) * (x1 - x0)
    sy = lambda y: y1 - (y - ylo) / (yhi - ylo) * (y1 - y0)
    for t in _ticks(ylo, yhi):
        c.line(x0, sy(t), x1, sy(t), color="#dddddd")
        c.text(x0 - 6, sy(t) + 4, yfmt % t, anchor="end", size=11)
    if xticks is not None:
        for i, t in enumerate(xticks):
            c.line(sx(t), y1, sx(t), y1 + 4)
            c.text(sx(t), y1 + 17, xticklabels[i] if xticklabels else ("%g" % t), size=11)
    c.line(x0, y1, x1, y1)
    c.line(x0, y0, x0, y1)
    c.text((x0 + x1) / 2, y1 + 36, xlabel)
    c.text(x0 - 46, (y0 + y1) / 2, ylabel, rotate=-90)
    return sx, sy


def _legend(c, names, x, y, styles=None):
    for i, n in enumerate(names):
        col = PALETTE[i % len(PALETTE)]
        dash = styles[i] if styles else None
        c.line(x, y + 16 * i - 4, x + 22, y + 16 * i - 4, color=col, width=2.5, dash=dash)
        c.text(x + 28, y + 16 * i, n, anchor="start", size=11)


def line_chart(path, title, series, xlabel, ylabel, ylim=None, xticks=None, xticklabels=None, diagonal=False,
               w=560, h=360, yfmt="%.2f", legend_at="right", xlim=None, legend_w=170):
    """series: list of dicts {name, x, y, err (optional), dash (optional), markers (bool)}."""
    c = Canvas(w, h, title)
    box = (70, 34, w - legend_w if legend_at == "right" else w - 20, h - 52)
    xs = [x for s in series for x in s["x"]]
    ys = [y for s in series for y in s["y"]]
    xlo, xhi = xlim if xlim else (min(xs), max(xs))
    if xhi == xlo:
        xhi = xlo + 1
    if ylim:
        ylo, yhi = ylim
    else:
        ylo, yhi = min(ys), max(ys)
        pad = (yhi - ylo) * 0.1 or 0.05
        ylo, yhi = ylo - pad, yhi + pad
    sx, sy = _axes(c, box, xlo, xhi, ylo, yhi, xlabel, ylabel, xticks or sorted(set(xs)), xticklabels, yfmt)
    if diagonal:
        c.line(sx(max(xlo, ylo)), sy(max(xlo, ylo)), sx(min(xhi, yhi)), sy(min(xhi, yhi)), color="#888888",
               dash="4,3")
    for i, s in enumerate(series):
        col = PALETTE[i % len(PALETTE)]
        pts = " ".join("%.1f,%.1f" % (sx(x), sy(y)) for x, y in zip(s["x"], s["y"]))
        dash = ' stroke-dasharray="%s"' % s["dash"] if s.get("dash") else ""
        c.add('<polyline points="%s" fill="none" stroke="%s" stroke-width="2"%s/>' % (pts, col, dash))
        for j, (x, y) in enumerate(zip(s["x"], s["y"])):
            if s.get("markers", True):
                c.add('<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>' % (sx(x), sy(y), col))
            if s.get("err"):
                e = s["err"][j]
                c.line(sx(x), sy(y - e), sx(x), sy(y + e), color=col, width=1.5)
                c.line(sx(x) - 4, sy(y - e), sx(x) + 4, sy(y - e), color=col, width=1.5)
                c.line(sx(x) - 4, sy(y + e), sx(x) + 4, sy(y + e), color=col, width=1.5)
    _legend(c, [s["name"] for s in series], box[2] + 12 if legend_at == "right" else box[0] + 12,
            box[1] + 14, [s.get("dash") for s in series])
    c.save(path)


def bar_chart(path, title, groups, series_names, values, errs=None, ylabel="", ylim=None, w=560, h=340,
              yfmt="%.2f", ref_line=None):
    """values[g][s]: bar of series s in group g; errs likewise (std)."""
    c = Canvas(w, h, title)
    box = (70, 34, w - 170, h - 52)
    vals = [v for row in values for v in row]
    if ylim:
        ylo, yhi = ylim
    else:
        ylo, yhi = 0.0, max(vals) * 1.15
    x0, y0, x1, y1 = box
    sy = lambda y: y1 - (y - ylo) / (yhi - ylo) * (y1 - y0)
    for t in _ticks(ylo, yhi):
        c.line(x0, sy(t), x1, sy(t), color="#dddddd")
        c.text(x0 - 6, sy(t) + 4, yfmt % t, anchor="end", size=11)
    c.line(x0, y1, x1, y1)
    c.line(x0, y0, x0, y1)
    c.text(x0 - 46, (y0 + y1) / 2, ylabel, rotate=-90)
    gw = (x1 - x0) / len(groups)
    bw = gw * 0.7 / len(series_names)
    for g, gname in enumerate(groups):
        gx = x0 + g * gw + gw * 0.15
        for s in range(len(series_names)):
            v = values[g][s]
            col = PALETTE[s % len(PALETTE)]
            bx = gx + s * bw
            top = sy(max(min(v, yhi), ylo))
            c.add('<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>'
                  % (bx, top, bw * 0.92, max(0.0, sy(ylo) - top), col))
            if errs:
                e = errs[g][s]
                cx = bx + bw * 0.46
                c.line(cx, sy(max(v - e, ylo)), cx, sy(min(v + e, yhi)), width=1.5)
            c.text(bx + bw * 0.46, top - 4, yfmt % v, size=9)
        c.text(x0 + g * gw + gw / 2, y1 + 17, gname, size=11)
    if ref_line is not None:
        val, label = ref_line
        c.line(x0, sy(val), x1, sy(val), color="#555555", dash="5,3")
        c.text(x1 - 4, sy(val) - 4, label, anchor="end", size=10, color="#555555")
    for s, n in enumerate(series_names):
        c.add('<rect x="%.1f" y="%.1f" width="14" height="10" fill="%s"/>'
              % (x1 + 12, y0 + 6 + 16 * s, PALETTE[s % len(PALETTE)]))
        c.text(x1 + 32, y0 + 15 + 16 * s, n, anchor="start", size=11)
    c.save(path)
