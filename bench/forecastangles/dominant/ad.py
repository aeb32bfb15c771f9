# angles (a) step timing / hazard cells and (d) two-state regime for chunk-60 (branch fc14; reads what main.go dumps)
import sys, itertools
from h import *
N = len(X)
MED1 = median([abs(C60[t] - C60[t - 1]) for t in range(1, TR) if not OG[t] and not OG[t - 1]])
print('# chunk-60 median one-window change days 1-7: %.1f' % MED1)

def switches(k, kind):
    thr = k * MED1; sw = [0] * N  # +1 up, -1 down at the window it is seen
    for o in range(5, N):
        if kind == 'one':
            d = C60[o] - median(C60[o - 3:o])
        else:
            d = median(C60[o - 1:o + 1]) - median(C60[o - 4:o - 1])
        if abs(d) > thr and sw[o - 1] == 0:
            sw[o] = 1 if d > 0 else -1
    return sw

def feats(sw):
    dss, ldir, last, ld = [0] * N, [0] * N, -10**6, 0
    for o in range(N):
        if sw[o]: last, ld = o, sw[o]
        dss[o], ldir[o] = o - last, ld
    pos = [0] * N
    for o in range(N):
        pos[o] = 1 if C60[o] > median(C60[max(0, o - 143):o + 1]) else 0
    return dss, ldir, pos

def dbin(d):
    return 0 if d <= 1 else 1 if d <= 5 else 2 if d <= 17 else 3 if d <= 53 else 4

CELLS = {
    'tod4': lambda o, F: ((o % PD) // 24,),
    'tod1': lambda o, F: ((o % PD) // 6,),
    'dss': lambda o, F: (dbin(F[0][o]),),
    'dss*ldir': lambda o, F: (dbin(F[0][o]), F[1][o]),
    'dss*pos': lambda o, F: (dbin(F[0][o]), F[2][o]),
    'pos': lambda o, F: (F[2][o],),
    'tod4*pos': lambda o, F: ((o % PD) // 24, F[2][o]),
    'tod4*dss': lambda o, F: ((o % PD) // 24, dbin(F[0][o])),
    'dss*ldir*pos': lambda o, F: (dbin(F[0][o]), F[1][o], F[2][o]),
}

def cellfit(cell, F, h, stat, nmin=10):
    def fit(end):
        g = {}
        for o in range(PD, end - h):
            if ok(o, h):
                g.setdefault(CELLS[cell](o, F), []).append(C60[o + h] - C60[o])
        pred = {c: (median(v) if stat == 'median' else sum(v) / len(v)) for c, v in g.items() if len(v) >= nmin}
        return lambda o: pred.get(CELLS[cell](o, F), 0.0)
    return fit

def gm(v):
    return math.exp(sum(math.log(x) for x in v) / len(v))


def hazard_table(kind, k):
    sw = switches(k, kind); F = feats(sw)
    for lo, hi, nm in ((PD, TR - 6, '1-7'), (TR, N - 6, '8-14')):
        by = {}
        byh = {}
        for o in range(lo, hi):
            if not ok(o, 6): continue
            nxt = any(sw[o + j] for j in range(1, 7))
            by.setdefault(dbin(F[0][o]), []).append(nxt)
            byh.setdefault((o % PD) // 6, []).append(nxt)
        dl = ' '.join('%s:%.2f' % (('<=10m', '20-50m', '1-3h', '3-9h', '>9h')[b], sum(v) / len(v)) for b, v in sorted(by.items()))
        hh = sorted(((sum(v) / len(v), hr) for hr, v in byh.items()), reverse=True)
        print('# hazard (%s k=%d) days %s: P(switch in next 60m) by time since last switch %s; by hour of day max %.2f (%02d:00), min %.2f' % (kind, k, nm, dl, hh[0][0], hh[0][1], hh[-1][0]))
hazard_table('two', 5)
hazard_table('two', 3)
# sizes: median |jump| of switches on days 1-7 vs 8-14 (two k=5), and signed by the level before
sw = switches(5, 'two')
for lo, hi, nm in ((0, TR, '1-7'), (TR, N, '8-14')):
    j = [C60[o + 2] - C60[o - 3] for o in range(max(lo, 3), min(hi, N - 2)) if sw[o]]
    print('# switch sizes (two k=5) days %s: n %d, up %d, median |size| %.0f req/s' % (nm, len(j), sum(1 for x in j if x > 0), median([abs(x) for x in j])))
res = []
for kind, k in itertools.product(('one', 'two'), (3, 5)):
    sw = switches(k, kind)
    F = feats(sw)
    n7 = sum(1 for o in range(TR) if sw[o]); n14 = sum(1 for o in range(TR, N) if sw[o])
    print('# switches %s k=%d: %d on days 1-7, %d on 8-14' % (kind, k, n7, n14))
    for cell, stat in itertools.product(CELLS, ('median', 'mean')):
        corr_h = {h: walk(cellfit(cell, F, h, stat), h) for h in HS}
        for lam in (0.5, 1.0):
            fcs = {h: add(corr_h[h], h, lam) for h in HS}
            tr, te = three(fcs)
            res.append(('(a) %s k=%d cell=%s %s lam=%.1f' % (kind, k, cell, stat, lam), tr, te))
res.sort(key=lambda r: r[1][2])
print('# (a) best 8 by 60-min on days 3-7 (walk-forward daily refit):')
for r in res[:8]: print('%-55s days3-7 %s  days8-14 %s' % (r[0], fmt(r[1]), fmt(r[2])))
res.sort(key=lambda r: gm(r[1]))
print('# (a) best 3 by geomean on days 3-7:')
for r in res[:3]: print('%-55s days3-7 %s  days8-14 %s' % (r[0], fmt(r[1]), fmt(r[2])))
print('# (a) spread days8-14 60m over all %d settings: %.3f-%.3f' % (len(res), min(r[2][2] for r in res), max(r[2][2] for r in res)))

# (d) two-state regime
def regime(h, nb, levelkind, mode):
    def fit(end):
        idx = [o for o in range(0, end) if not OG[o]]
        thr = twomeans([C60[o] for o in idx])
        st = lambda o: 1 if C60[o] > thr else 0
        cnt = {}
        for o in range(PD, end - h):
            if ok(o, h):
                key = ((o % PD) * nb // PD, st(o))
                c = cnt.setdefault(key, [1.0, 2.0])  # Laplace: 1 switch of 2
                c[1] += 1; c[0] += st(o + h) != st(o)
        lev = {s: median([C60[o] for o in idx if st(o) == s]) for s in (0, 1)}
        def f(o):
            s = st(o); c = cnt.get(((o % PD) * nb // PD, s), [1.0, 2.0]); p = c[0] / c[1]
            if levelkind == 'state':
                L = lev[1 - s]
            else:  # the last level seen in the other state (median of its last 6 windows there)
                seen = []
                j = o
                while j >= 0 and len(seen) < 6 and o - j < 3 * PD:
                    if not OG[j] and st(j) != s: seen.append(C60[j])
                    j -= 1
                L = median(seen) if seen else lev[1 - s]
            if mode == 'mean': return p * (L - C60[o])
            return (L - C60[o]) if p > 0.5 else 0.0
        return f
    return fit

resd = []
for nb, lk, mode in itertools.product((1, 6, 24), ('state', 'recent'), ('mean', 'median')):
    corr_h = {h: walk(regime(h, nb, lk, mode), h) for h in HS}
    lams = (0.25, 0.5, 1.0) if mode == 'mean' else (1.0,)
    for lam in lams:
        fcs = {h: add(corr_h[h], h, lam) for h in HS}
        tr, te = three(fcs)
        resd.append(('(d) tod bins=%d level=%s %s lam=%.2f' % (nb, lk, mode, lam), tr, te))
        if lam == 1.0 and mode == 'mean':
            # standalone: others naive + expected chunk-60 level
            st = {h: [X[o] + corr_h[h][o] for o in range(N)] for h in HS}
            tr2, te2 = three(st)
            resd.append(('(d) standalone naive+E[c60 change] bins=%d level=%s' % (nb, lk), tr2, te2))
resd.sort(key=lambda r: r[1][2])
print('# (d) all, by 60-min on days 3-7:')
for r in resd: print('%-55s days3-7 %s  days8-14 %s' % (r[0], fmt(r[1]), fmt(r[2])))

# bounds: the same families fitted on days 8-14 themselves (they see the answers)
def bound_cells(fitfn, h):
    f = fitfn(N)
    return [f(o) for o in range(N)]
sw = switches(5, 'two'); F = feats(sw)
print('# bounds, fitted on days 8-14 (see the answers), days 8-14 10/30/60 min:')
for cell in ('tod1', 'dss*ldir', 'dss*ldir*pos', 'tod4*dss'):
    for stat in ('median', 'mean'):
        def cf(h, cell=cell, stat=stat):
            def fit(end):
                g = {}
                for o in range(TR, end - h):
                    if ok(o, h):
                        g.setdefault(CELLS[cell](o, F), []).append(C60[o + h] - C60[o])
                pred = {c: (median(v) if stat == 'median' else sum(v) / len(v)) for c, v in g.items() if len(v) >= 10}
                return lambda o: pred.get(CELLS[cell](o, F), 0.0)
            return fit
        for lam in (0.5, 1.0):
            _, te = three({h: add(bound_cells(cf(h), h), h, lam) for h in HS})
            print('(a) bound two k=5 cell=%s %s lam=%.1f  days8-14 %s' % (cell, stat, lam, fmt(te)))
