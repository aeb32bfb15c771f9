# (c) chunk-60's Weibull fit (mean inter-arrival x rate) by decile as cells (branch fc14; reads what main.go dumps)
from h import *
N = len(X)
cv, pat, a1, a2 = cols('chunk-60')
mr = [None] * N
for o in range(N):
    if pat[o] == 2 and a1[o] > 0 and a2[o] > 0 and CL['chunk-60'][o] > 0:
        mr[o] = math.log(a2[o] * math.gamma(1 + 1 / a1[o]) * CL['chunk-60'][o])
print('# chunk-60: Weibull windows days1-7 %d, days 8-14 %d' % (sum(1 for o in range(TR) if mr[o] is not None), sum(1 for o in range(TR, N) if mr[o] is not None)))
vals = sorted(mr[o] for o in range(TR) if mr[o] is not None)
qs = [vals[int(len(vals) * q)] for q in (0.1, 0.25, 0.5, 0.75, 0.9)]
print('# log(fit mean x rate) quantiles days 1-7 (10/25/50/75/90%%): %s' % ' '.join('%.3f' % q for q in qs))
edges = [-9] + qs + [9]
for h in (1, 3, 6):
    for lo, hi, nm in ((PD, TR - h, '1-7'), (TR, N - h, '8-14')):
        out = []
        for b in range(len(edges) - 1):
            ii = [o for o in range(lo, hi) if ok(o, h) and mr[o] is not None and edges[b] <= mr[o] < edges[b + 1]]
            d = [C60[o + h] - C60[o] for o in ii]
            out.append('%d: med %+.0f up %.2f' % (len(d), median(d), sum(1 for x in d if x > 0) / max(1, len(d))))
        ii = [o for o in range(lo, hi) if ok(o, h) and mr[o] is None]
        d = [C60[o + h] - C60[o] for o in ii]
        out.append('gamma/none %d: med %+.0f up %.2f' % (len(d), median(d), sum(1 for x in d if x > 0) / max(1, len(d))))
        print('# h=%dm days %s by decile bin of the fit: %s' % (h * 10, nm, ' | '.join(out)))
# level of chunk-60 by pattern
for p in (0, 1, 2):
    ii = [o for o in range(N) if pat[o] == p and not OG[o]]
    print('# pattern %d: %d windows, median rate %.0f' % (p, len(ii), median([C60[o] for o in ii])))

def cell(o):
    if mr[o] is None: return ('g', pat[o])
    for b in range(len(edges) - 1):
        if edges[b] <= mr[o] < edges[b + 1]: return ('w', b)
def cellfit(h, lo=PD, nmin=10):
    def fit(end):
        g = {}
        for o in range(lo, end - h):
            if ok(o, h): g.setdefault(cell(o), []).append(C60[o + h] - C60[o])
        pred = {c: median(v) for c, v in g.items() if len(v) >= nmin}
        return lambda o: pred.get(cell(o), 0.0)
    return fit
print('# (c) chunk-60 fit-mean-x-rate deciles (edges from days 1-7) + pattern as cells; cell median of chunk-60 h-change added: days 3-7 | days 8-14')
for mode in ('walk', 'fixed', 'bound'):
    ch = {}
    for h in HS:
        if mode == 'walk': ch[h] = walk(cellfit(h), h)
        else:
            f = cellfit(h)(TR) if mode == 'fixed' else cellfit(h, lo=TR)(N)
            ch[h] = [f(o) for o in range(N)]
    for lam in (0.5, 1.0):
        tr3, te = three({h: add(ch[h], h, lam) for h in HS})
        print('(c) cells %-6s lam %.1f   %s | %s' % (mode, lam, fmt(tr3), fmt(te)))
