# usage: /usr/bin/python3 bench/walparse.py DIR   (DIR holds h.db and h.db-wal copied from a running server's
# data dir during the send load: cp data/homeserver.db-wal DIR/h.db-wal; cp data/homeserver.db DIR/h.db)
# Prints WAL pages per commit, split by the b-tree (table or index) each page belongs to.
import struct, sqlite3, collections, shutil, sys
d = sys.argv[1]
wal = open(d + '/h.db-wal', 'rb').read()
magic, ver, psz, ckseq, s1, s2, c1, c2 = struct.unpack('>IIIIIIII', wal[:32])
off = 32; commits = []; cur = []
while off + 24 + psz <= len(wal):
    pg, dbsz, fs1, fs2, k1, k2 = struct.unpack('>IIIIII', wal[off:off + 24])
    if (fs1, fs2) != (s1, s2): break
    cur.append(pg)
    if dbsz: commits.append(cur); cur = []
    off += 24 + psz
print("commits", len(commits), "frames", sum(map(len, commits)))
shutil.copy(d + '/h.db', d + '/m.db')
c = sqlite3.connect(d + '/m.db')
m = {p: n for n, p in c.execute("select name, pageno from dbstat")}
body = commits[1:-1] or commits
cnt = collections.Counter()
for cm in body:
    for p in cm: cnt[m.get(p, '?')] += 1
sizes = [len(x) for x in body]
print("pages/commit avg %.1f min %d max %d" % (sum(sizes) / len(sizes), min(sizes), max(sizes)))
for k, v in cnt.most_common(30): print("%6.2f %s" % (v / len(body), k))
