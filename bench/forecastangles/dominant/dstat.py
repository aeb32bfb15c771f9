# (d) chunk-60's two states (2-means threshold on days 1-7): switch probabilities by 4 h of day, both weeks (branch fc14)
from h import *
N = len(X)
thr = twomeans([C60[o] for o in range(TR) if not OG[o]])
st = [1 if C60[o] > thr else 0 for o in range(N)]
print('# 2-means threshold on days 1-7: %.0f req/s; share high days1-7 %.2f, days8-14 %.2f' % (thr, sum(st[:TR]) / TR, sum(st[TR:]) / (N - TR)))
for h in (1, 3, 6):
    for lo, hi, nm in ((PD, TR - h, '1-7'), (TR, N - h, '8-14')):
        line = []
        for s in (0, 1):
            for b in range(6):
                ii = [o for o in range(lo, hi) if ok(o, h) and st[o] == s and (o % PD) // 24 == b]
                p = sum(st[o + h] != s for o in ii) / max(1, len(ii))
                line.append('%.2f' % p)
        print('# P(switch within %dm) days %s, from low by 4h bin: %s; from high: %s' % (h * 10, nm, ' '.join(line[:6]), ' '.join(line[6:])))
