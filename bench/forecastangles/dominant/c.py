# (c) the other CSV columns (CV, pattern, the fitted distribution's parameters) as leading signals (branch fc14; reads what main.go dumps)
import itertools
from h import *
N = len(X)
names = sorted(CL, key=lambda c: -sum(CL[c]))
FE = {}
for c in names:
    if sum(CL[c][:TR]) == 0: continue
    cv, pat, a1, a2 = cols(c)
    lcv = [math.log(v + 1e-3) if not OG[o] else 0.0 for o, v in enumerate(cv)]
    lcv = clean(lcv, OG)
    wb = clean([1.0 if p == 2 else 0.0 for p in pat], OG)
    shp = clean([math.log(a1[o]) if pat[o] == 2 and a1[o] > 0 else (math.log(1 / max(cv[o], 1e-3) ** 2) if pat[o] == 1 else 0.0) for o in range(N)], OG)
    # Weibull mean x rate (1 when the fit matches the rate); 0 otherwise
    mr = [0.0] * N
    for o in range(N):
        if pat[o] == 2 and a1[o] > 0 and a2[o] > 0 and CL[c][o] > 0:
            mr[o] = math.log(a2[o] * math.gamma(1 + 1 / a1[o]) * CL[c][o])
    mr = clean(mr, OG)
    for nm, s in (('logcv', lcv), ('weibull', wb), ('logshape', shp), ('fitmean*rate', mr)):
        if max(s[:TR]) == min(s[:TR]): continue
        FE[(c, nm, 0)] = s                                   # level
        for L in (1, 3, 6):
            FE[(c, nm, L)] = [s[o] - s[max(0, o - L)] for o in range(N)]  # change over L windows
print('# %d column features (4 columns x level and change over 10/30/60 min, per client with volume on days 1-7)' % len(FE))
TARGETS = {'c60': lambda o, h: C60[o + h] - C60[o], 'resid': lambda o, h: ys[o + h] - MEAN[h][o]}
scan = {}
for h in HS:
    i1 = [o for o in range(PD, TR - h) if ok(o, h) and not OG[o - 6]]
    i2 = [o for o in range(TR, N - h) if ok(o, h) and not OG[o - 6] and not TEST.g[o] and not TEST.g[o + h]]
    for tn, tf in TARGETS.items():
        y1 = [tf(o, h) for o in i1]; y2 = [tf(o, h) for o in i2]
        for k, s in FE.items():
            scan[(h, tn) + k] = (corr([s[o] for o in i1], y1), corr([s[o] for o in i2], y2), len(i1))
for h in HS:
    for tn in TARGETS:
        rs = sorted(((k, v) for k, v in scan.items() if k[:2] == (h, tn)), key=lambda kv: -abs(kv[1][0]))
        n = rs[0][1][2]
        keep = sum(1 for k, v in rs[:20] if v[0] * v[1] > 0 and abs(v[1]) > 2 / math.sqrt(n))
        print('# h=%dm target %s: n=%d (2 sigma %.3f); top 5 days 1-7 -> days 8-14: %s; of top 20, %d keep sign and 2 sigma' % (
            h * 10, tn, n, 2 / math.sqrt(n),
            '; '.join('%s %s L%d %+.3f->%+.3f' % (k[2], k[3], k[4], v[0], v[1]) for k, v in rs[:5]), keep))

def predictor(h, tn, K):
    rs = sorted(((k, v) for k, v in scan.items() if k[:2] == (h, tn)), key=lambda kv: -abs(kv[1][0]))[:K]
    keys = [k[2:] for k, v in rs]
    fx = lambda o: [FE[k][o] for k in keys] + [1.0]
    def fit(end):
        idx = [o for o in range(PD, end - h) if ok(o, h) and not OG[o - 6]]
        beta = lad([fx(o) for o in idx], [TARGETS[tn](o, h) for o in idx], iters=20, ridge=1e-3)
        return lambda o: sum(b * x for b, x in zip(beta, fx(o)))
    return walk(fit, h)

print('# (c) on top of the shipped forecast, features chosen by |corr| on days 1-7, LAD refitted daily (walk forward): days 3-7 | days 8-14')
for tn, K in itertools.product(TARGETS, (1, 3, 10)):
    corr_h = {h: predictor(h, tn, K) for h in HS}
    for lam in (0.5, 1.0):
        fcs = {h: add(corr_h[h], h, lam) for h in HS}
        tr3, te = three(fcs)
        print('(c) target %-5s top %2d column features, lam %.1f   %s | %s' % (tn, K, lam, fmt(tr3), fmt(te)))
