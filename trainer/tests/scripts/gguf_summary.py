#!/usr/bin/env python3
"""Independent GGUF reader (standard library only) that prints the metadata, the tensor count
per type and the parameter count of a GGUF file. It produced the golden numbers asserted in
tests/it/default_model.rs:  python3 trainer/tests/scripts/gguf_summary.py FILE.gguf"""
import struct, sys, collections
f = open(sys.argv[1], 'rb'); b = f.read()
pos = 0
def rd(fmt):
    global pos
    v = struct.unpack_from('<' + fmt, b, pos); pos += struct.calcsize('<' + fmt); return v[0]
def rs():
    n = rd('Q'); global pos; s = b[pos:pos+n]; pos += n; return s.decode('utf-8', 'replace')
sizes = {0:'B',1:'b',2:'H',3:'h',4:'I',5:'i',6:'f',7:'?',10:'Q',11:'q',12:'d'}
def rv(t):
    if t in sizes: return rd(sizes[t])
    if t == 8: return rs()
    if t == 9:
        et = rd('I'); n = rd('Q'); return [rv(et) for _ in range(n)]
assert b[:4] == b'GGUF'; pos = 4
ver = rd('I'); nt = rd('Q'); nkv = rd('Q')
kv = {}
for _ in range(nkv):
    k = rs(); t = rd('I'); kv[k] = rv(t)
for k, v in kv.items():
    if isinstance(v, list): print(k, f'[list {len(v)}]', v[:3])
    elif isinstance(v, str) and len(v) > 80: print(k, repr(v[:80]) + '...')
    else: print(k, v)
total = 0; types = collections.Counter(); names = dict(enumerate('F32 F16 Q4_0 Q4_1 4 5 Q5_0 Q5_1 Q8_0 Q8_1 Q2_K Q3_K Q4_K Q5_K Q6_K Q8_K '
                       'IQ2_XXS IQ2_XS IQ3_XXS IQ1_S IQ4_NL IQ3_S IQ2_S IQ4_XS I8 I16 I32 I64 F64 '
                       'IQ1_M BF16'.split()))
for _ in range(nt):
    name = rs(); nd = rd('I'); dims = [rd('Q') for _ in range(nd)]; t = rd('I'); off = rd('Q')
    n = 1
    for d in dims: n *= d
    total += n; types[names.get(t, t)] += n
print('version', ver, 'tensors', nt, 'kv', nkv)
print('params', total, dict(types))
