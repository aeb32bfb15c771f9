# (b) cross-client leading indicators of chunk-60's (and the sum's) change (branch fc14; reads what main.go dumps)
import itertools
from h import *
N = len(X)
names = sorted(CL, key=lambda c: -sum(CL[c]))
others = [c for c in names if c != 'chunk-60']
S = {c: clean(CL[c], OG) for c in others}
S['OTHERS'] = OTH
LAGS = (1, 2, 3, 4, 5, 6)

def pairs(lo, hi, h, L):
    return [o for o in range(max(lo, L, PD), hi - h) if ok(o, h) and not OG[o - L]]

# lagged cross-correlation: the client's change over the last L windows vs chunk-60's next h
scan = {}
for h in HS:
    tr_idx = {L: pairs(0, TR, h, L) for L in LAGS}
    te_idx = {L: pairs(TR, N, h, L) for L in LAGS}
    for c, L in itertools.product(S, LAGS):
        s = S[c]
        if sum(s[:TR]) == 0: continue
        y1 = [C60[o + h] - C60[o] for o in tr_idx[L]]; x1 = [s[o] - s[o - L] for o in tr_idx[L]]
        y2 = [C60[o + h] - C60[o] for o in te_idx[L]]; x2 = [s[o] - s[o - L] for o in te_idx[L]]
        scan[(h, c, L)] = (corr(x1, y1), corr(x2, y2), len(x1))
for h in HS:
    rs = sorted(((k, v) for k, v in scan.items() if k[0] == h), key=lambda kv: -abs(kv[1][0]))
    n = rs[0][1][2]
    print('# h=%dm: %d (client, lag) pairs, n=%d on days 1-7 (|corr| > %.3f is 2 sigma by chance); top 8 on days 1-7 -> the same on days 8-14:' % (h * 10, len(rs), n, 2 / math.sqrt(n)))
    for k, v in rs[:8]:
        print('#   %-10s lag %2dm  corr days1-7 %+.3f  days8-14 %+.3f' % (k[1], k[2] * 10, v[0], v[1]))
    o = scan[(h, 'OTHERS', 1)], scan[(h, 'OTHERS', 3)], scan[(h, 'OTHERS', 6)]
    print('#   OTHERS sum lag 10/30/60m: days1-7 %+.3f/%+.3f/%+.3f days8-14 %+.3f/%+.3f/%+.3f' % (o[0][0], o[1][0], o[2][0], o[0][1], o[1][1], o[2][1]))
    # how many of the top 20 keep their sign with |corr| > 2 sigma on days 8-14
    keep = sum(1 for k, v in rs[:20] if v[0] * v[1] > 0 and abs(v[1]) > 2 / math.sqrt(len(pairs(TR, N, h, k[2]))))
    print('#   of the top 20 on days 1-7, %d keep sign and 2 sigma on days 8-14' % keep)

# leading of the onsets specifically: event study on the others' change in the hour before chunk-60's big moves
# predictors: top-K (client, lag) by |corr| on days 1-7 for each h, LAD on days 1-7 (and walk-forward), added to shipped
def predictor(h, K, walkfit):
    rs = sorted(((k, v) for k, v in scan.items() if k[0] == h), key=lambda kv: -abs(kv[1][0]))[:K]
    feats = [(k[1], k[2]) for k, v in rs]
    def fx(o):
        return [S[c][o] - S[c][max(0, o - L)] for c, L in feats]
    def fit(end):
        idx = [o for o in range(max(L for _, L in feats), end - h) if ok(o, h) and o >= PD]
        Xs = [fx(o) for o in idx]; ys_ = [C60[o + h] - C60[o] for o in idx]
        beta = lad(Xs, ys_, iters=20, ridge=1e-3)
        return lambda o: sum(b * x for b, x in zip(beta, fx(o)))
    if walkfit:
        return walk(fit, h)
    f = fit(TR)
    return [f(o) for o in range(N)]

rows = []
for K, wf in itertools.product((1, 3, 10), (False, True)):
    corr_h = {h: predictor(h, K, wf) for h in HS}
    for lam in (0.5, 1.0):
        fcs = {h: add(corr_h[h], h, lam) for h in HS}
        tr, te = both(fcs)
        tr3, _ = three(fcs)
        rows.append(('(b) top %d leads by days-1-7 corr, LAD %s, lam %.1f' % (K, 'walk-forward' if wf else 'fit days 1-7', lam), tr, tr3, te))
# the others' sum alone as the lead (the documented 0.12 at 10 min)
def oth(h, L):
    def fit(end):
        idx = [o for o in range(PD, end - h) if ok(o, h) and not OG[o - L]]
        b = lad([[OTH[o] - OTH[o - L]] for o in idx], [C60[o + h] - C60[o] for o in idx], iters=20, ridge=1e-3)
        return lambda o: b[0] * (OTH[o] - OTH[o - L])
    return walk(fit, h)
for L in (1, 3, 6):
    fcs = {h: add(oth(h, L), h) for h in HS}
    tr, te = both(fcs); tr3, _ = three(fcs)
    rows.append(('(b) the others sum change over %dm, LAD walk-forward' % (L * 10), tr, tr3, te))
print('# (b) on top of the shipped forecast: days 2-7 (in-sample for the days-1-7 fits) | days 3-7 | days 8-14')
for r in rows:
    print('%-58s %s | %s | %s' % (r[0], fmt(r[1]), fmt(r[2]), fmt(r[3])))
