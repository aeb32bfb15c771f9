# (b) event study: clients' signed change in the 10-60 min before chunk-60's step onsets (branch fc14; reads what main.go dumps)
from h import *
N = len(X)
MED1 = median([abs(C60[t] - C60[t - 1]) for t in range(1, TR) if not OG[t] and not OG[t - 1]])
lev = [median(C60[max(0, t - 2):t + 3]) for t in range(N)]   # centred running median of 5 (hindsight, analysis only)
def onsets(k):
    out = []
    for t in range(2, N):
        d, dp = lev[t] - lev[t - 1], lev[t - 1] - lev[t - 2]
        if abs(d) > k * MED1 and not (dp * d > 0 and abs(dp) > k * MED1):
            out.append((t, 1 if d > 0 else -1))
    return out
names = sorted(CL, key=lambda c: -sum(CL[c]))
S = {c: clean(CL[c], OG) for c in names if c != 'chunk-60' and sum(CL[c][:TR]) > 0}
S['OTHERS'] = OTH
for k in (3, 5):
    ons = onsets(k)
    on1 = [(t, s) for t, s in ons if PD <= t < TR]; on2 = [(t, s) for t, s in ons if t >= TR + 6]
    res = []
    for c, s in S.items():
        for L in range(1, 7):
            ch = [s[o] - s[o - L] for o in range(L + PD, N)]
            sd = math.sqrt(sum(x * x for x in ch) / len(ch)) or 1
            z1 = sum(sg * (s[t - 1] - s[t - 1 - L]) for t, sg in on1) / sd / math.sqrt(len(on1))
            z2 = sum(sg * (s[t - 1] - s[t - 1 - L]) for t, sg in on2) / sd / math.sqrt(len(on2))
            res.append((abs(z1), c, L, z1, z2))
    res.sort(reverse=True)
    print('# onsets k=%d: %d on days 2-7, %d on days 8-14; %d (client, lag) pairs; signed change before the onset window in sd units x sqrt(n) (chance ~N(0,1), max of %d ~3.2)' % (k, len(on1), len(on2), len(res), len(res)))
    for r in res[:6]:
        print('#   %-10s over the %2d min before: days 1-7 z %+.2f, days 8-14 z %+.2f' % (r[1], r[2] * 10, r[3], r[4]))
    o = [r for r in res if r[1] == 'OTHERS']
    print('#   OTHERS: ' + ', '.join('%dm %+.2f/%+.2f' % (r[2] * 10, r[3], r[4]) for r in sorted(o, key=lambda r: r[2])))
