# harness (branch fc14): the dump of main.go, scored with forecast.EvaluateTenants' gap mask and scoring
import csv, math, os
PD = 144
TR = 7 * PD
HS = [1, 3, 6]
D = os.environ.get('FA_SERVEGEN', '/work/shared/traces/servegen/language/m-mid')  # read by c.py, c2.py
DATA = os.environ.get('FA_DATA', '/tmp/forecastangles')

def load():
    fc = [l.strip().split(',') for l in open(os.path.join(DATA, 'fc.csv'))]
    ys = [float(r[1]) for r in fc]
    mean = {h: [float(r[2 + 2 * i]) for r in fc] for i, h in enumerate(HS)}
    p90 = {h: [float(r[3 + 2 * i]) for r in fc] for i, h in enumerate(HS)}
    cl = {}
    for l in open(os.path.join(DATA, 'clients.csv')):
        p = l.strip().split(',')
        cl[p[0].replace('-trace', '')] = [float(v) for v in p[1:]]
    return ys, mean, p90, cl

def cols(name):
    """per window of one client: cv, pattern (0 none, 1 gamma, 2 weibull), a1, a2"""
    n = 2016
    cv, pat, a1, a2 = [0.0] * n, [0] * n, [0.0] * n, [0.0] * n
    for r in csv.reader(open(os.path.join(D, name + '-trace.csv'))):
        i = int(float(r[0])) // 600
        if i >= n: continue
        cv[i] = float(r[2]) if r[2] else 0.0
        pat[i] = {'': 0, 'Gamma': 1, 'Weibull': 2}[r[3]]
        a1[i] = float(r[4]) if r[4] else 0.0
        a2[i] = float(r[5]) if r[5] else 0.0
    return cv, pat, a1, a2

def detect_gaps(ys):
    g = [False] * len(ys)
    for i, y in enumerate(ys):
        nb = sorted(ys[j] for j in (i - 2 * PD, i - PD, i + PD, i + 2 * PD) if 0 <= j < len(ys))
        if not nb: continue
        m = len(nb)
        med = nb[m // 2] if m % 2 else (nb[m // 2 - 1] + nb[m // 2]) / 2
        g[i] = y < 0.05 * med
    return g

def online_gaps(ys):
    g = [False] * len(ys); plain = 0.0; started = False; run = 0
    for t, x in enumerate(ys):
        low = started and x < 0.05 * plain
        ylow = started and t >= PD and ys[t - PD] < 0.05 * plain
        run = run + 1 if (low and not ylow) else 0
        g[t] = 0 < run <= 24
        if not g[t]:
            if not started: plain, started = x, True
            plain += 0.5 * (x - plain)
    return g

def clean(xs, g):
    out = []; last = 0.0
    for x, gg in zip(xs, g):
        if not gg: last = x
        out.append(last)
    return out

class Split:
    def __init__(self, ys, lo, hi):
        self.ys = ys[:hi]; self.g = detect_gaps(self.ys); self.lo, self.hi = lo, hi
    def idx(self, h):
        return [t for t in range(max(self.lo, h, PD), self.hi)
                if not (self.g[t] or self.g[t - h] or self.g[t - PD])]
    def mae(self, fc, h):
        ii = self.idx(h)
        return sum(abs(fc[t - h] - self.ys[t]) for t in ii) / len(ii)
    def base(self, h):
        ii = self.idx(h)
        n = sum(abs(self.ys[t - h] - self.ys[t]) for t in ii) / len(ii)
        s = sum(abs(self.ys[t - PD] - self.ys[t]) for t in ii) / len(ii)
        return min(n, s)
    def ratio(self, fc, h):
        return self.mae(fc, h) / self.base(h)
    def cover(self, p90, h):
        ii = self.idx(h)
        return sum(1 for t in ii if self.ys[t] <= p90[t - h]) / len(ii)

ys, MEAN, P90, CL = load()
TRAIN = Split(ys, PD, TR)      # days 2-7, mask on days 1-7 only (as -days 7 -train-days 1)
TEST = Split(ys, TR, len(ys))  # days 8-14
OG = online_gaps(ys)
X = clean(ys, OG)
C60 = clean(CL['chunk-60'], OG)
OTH = [a - b for a, b in zip(X, C60)]

def both(fcs):
    """fcs: {h: forecast list}; returns (train ratios, test ratios)"""
    return [TRAIN.ratio(fcs[h], h) for h in HS], [TEST.ratio(fcs[h], h) for h in HS]

def fmt(r):
    return '/'.join('%.3f' % v for v in r)

if __name__ == '__main__':
    tr, te = both(MEAN)
    print('shipped train', fmt(tr), 'test', fmt(te))
    print('cover test', [round(TEST.cover(P90[h], h), 3) for h in HS])
    print('gaps', sum(TEST.g), 'online gaps', sum(OG), 'agree', sum(a == b for a, b in zip(TEST.g, OG)))

def median(v):
    v = sorted(v); m = len(v)
    if m == 0: return 0.0
    return v[m // 2] if m % 2 else (v[m // 2 - 1] + v[m // 2]) / 2

# twomeans is the 2-means threshold of v (the two-state regime's split,
# angle (d)): the midpoint of the two groups' means, iterated from the median.
def twomeans(v):
    v = sorted(v); thr = median(v)
    for _ in range(50):
        lo = [x for x in v if x <= thr]; hi = [x for x in v if x > thr]
        if not lo or not hi: break
        t2 = (sum(lo) / len(lo) + sum(hi) / len(hi)) / 2
        if abs(t2 - thr) < 1e-9: break
        thr = t2
    return thr

def solve(A, b):
    n = len(b); M = [row[:] + [b[i]] for i, row in enumerate(A)]
    for c in range(n):
        p = max(range(c, n), key=lambda r: abs(M[r][c]))
        M[c], M[p] = M[p], M[c]
        if abs(M[c][c]) < 1e-12: return [0.0] * n
        for r in range(n):
            if r != c:
                f = M[r][c] / M[c][c]
                for k in range(c, n + 1): M[r][k] -= f * M[c][k]
    return [M[i][n] / M[i][i] for i in range(n)]

def wls(X, y, w, ridge=1e-6):
    k = len(X[0])
    A = [[sum(w[i] * X[i][a] * X[i][b] for i in range(len(y))) + (ridge if a == b else 0) for b in range(k)] for a in range(k)]
    bb = [sum(w[i] * X[i][a] * y[i] for i in range(len(y))) for a in range(k)]
    return solve(A, bb)

def lad(X, y, iters=30, ridge=1e-6):
    w = [1.0] * len(y); beta = wls(X, y, w, ridge)
    for _ in range(iters):
        r = [abs(y[i] - sum(b * x for b, x in zip(beta, X[i]))) for i in range(len(y))]
        fl = max(1e-9, 1e-3 * (sum(r) / len(r)))
        w = [1.0 / max(ri, fl) for ri in r]
        beta = wls(X, y, w, ridge)
    return beta

def corr(a, b):
    n = len(a)
    if n < 3: return 0.0
    ma, mb = sum(a) / n, sum(b) / n
    sa = math.sqrt(sum((x - ma) ** 2 for x in a)); sb = math.sqrt(sum((x - mb) ** 2 for x in b))
    if sa == 0 or sb == 0: return 0.0
    return sum((x - ma) * (y - mb) for x, y in zip(a, b)) / sa / sb

def ok(o, h):
    """origin o and target o+h are usable for fitting: no online gap at either, both exist"""
    return o + h < len(X) and not OG[o] and not OG[o + h]

def add(corr_fc, h, lam=1.0):
    """shipped forecast + lam * correction (correction[o] for o+h)"""
    return [m + lam * c for m, c in zip(MEAN[h], corr_fc)]

def walk(fitfn, h, first_day=2):
    """walk forward: before each day d (0-based, from first_day), fit on pairs whose target lies
    before day d; fitfn(end) returns a predictor f(o) -> correction. Returns correction list."""
    out = [0.0] * len(X)
    for d in range(first_day, len(X) // PD):
        f = fitfn(d * PD)
        for o in range(d * PD - h, min((d + 1) * PD - h, len(X))):
            if o >= 0: out[o] = f(o)
    return out

TRAIN3 = Split(ys, 2 * PD, TR)   # days 3-7 (walk-forward fits start after days 1-2)

def three(fcs):
    return [TRAIN3.ratio(fcs[h], h) for h in HS], [TEST.ratio(fcs[h], h) for h in HS]
