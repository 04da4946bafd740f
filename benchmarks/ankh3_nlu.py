"""Ankh3 [NLU] examples as plm's ankh3_pretrain builds them, for the Python peer scripts.

Single-residue spans in T5's layout (clean runs first), sentinels
<extra_id_k> = 255 - k, plm's Ankh3 preset residue ids.
"""
RESIDUE_IDS = {c: 7 + i for i, c in enumerate('LAGSVERTIDPKNFQYHMCW')}
NLU, EOS, UNK = 3, 1, 2


def nlu_example(ids, p, rng):
    """Masks round(len * p) residues of ids (a list of token ids) with rng
    (random.Random or the random module). Returns (input, target, where):
    where[k] is the input position of sentinel k."""
    n = len(ids)
    noise = max(1, min(n - 1, round(n * p)))
    spans = min(noise, n - noise)

    def seg(items, k):
        cuts = sorted(rng.sample(range(1, items), k - 1))
        b = [0] + cuts + [items]
        return [b[i + 1] - b[i] for i in range(k)]

    nl, cl = seg(noise, spans), seg(n - noise, spans)
    inp, tgt, where, pos = [NLU], [], [], 0
    for k in range(spans):
        inp += ids[pos:pos + cl[k]]; pos += cl[k]
        where.append(len(inp)); inp.append(255 - k); tgt.append(255 - k)
        tgt += ids[pos:pos + nl[k]]; pos += nl[k]
    return inp + [EOS], tgt + [EOS], where
