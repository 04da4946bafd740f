"""Does a trained Ankh3-style model find sentinel k in its input?

Loads a model written by ankh3_pretrain (its --out/model directory, a Hugging
Face T5 checkpoint), builds [NLU] examples the way ankh3_pretrain does
(single-residue spans, T5 sentinel layout, <extra_id_k> = 255 - k, plm's
Ankh3 residue ids) from the last --count proteins of a FASTA file, and prints

- masked-residue accuracy (teacher-forced, as ankh3_pretrain evaluates it);
- for every decoder layer and head, the share of cross-attention that the
  decoder step reading <extra_id_k> puts on <extra_id_k>'s position in the
  encoder input. A uniform spread gives 1 / (input length); a decoder that
  has learned to align puts most of its mass there.

    python3 benchmarks/sentinel_alignment_probe.py --model ankh3_run/model \\
        --fasta examples/data/swissprot_families.fasta.gz

Needs torch and transformers (pip), like the other peer scripts.
"""
import argparse, gzip, random, torch
from transformers import T5ForConditionalGeneration
from ankh3_nlu import RESIDUE_IDS, UNK, nlu_example

ap = argparse.ArgumentParser()
ap.add_argument('--model', required=True, help='Hugging Face T5 directory written by ankh3_pretrain')
ap.add_argument('--fasta', required=True, help='plain or .gz FASTA')
ap.add_argument('--count', type=int, default=150, help='proteins probed, from the end of the file')
ap.add_argument('--mask-probs', default='0.1,0.2,0.3')
ap.add_argument('--max-length', type=int, default=128, help='longer proteins are cropped at random')
ap.add_argument('--seed', type=int, default=5)
args = ap.parse_args()

opener = gzip.open if args.fasta.endswith('.gz') else open
seqs, cur = [], []
with opener(args.fasta, 'rt') as f:
    for line in f:
        if line.startswith('>'):
            if cur: seqs.append(''.join(cur))
            cur = []
        else:
            cur.append(line.strip())
if cur: seqs.append(''.join(cur))
rng = random.Random(args.seed)
probs = [float(p) for p in args.mask_probs.split(',')]

def example(s):
    if len(s) > args.max_length:
        st = rng.randint(0, len(s) - args.max_length); s = s[st:st + args.max_length]
    inp, tgt, where = nlu_example([RESIDUE_IDS.get(c, UNK) for c in s], rng.choice(probs), rng)
    if len(tgt) != 2 * len(where) + 1: raise SystemExit('masking probabilities above 0.5 give spans longer than one residue')
    return inp, tgt, where

m = T5ForConditionalGeneration.from_pretrained(args.model, attn_implementation='eager').eval()
right = total = 0; lengths = []; mass = {}
for s in seqs[-args.count:]:
    inp, tgt, where = example(s)
    lengths.append(len(inp))
    with torch.no_grad():
        out = m(input_ids=torch.tensor([inp]), labels=torch.tensor([tgt]), output_attentions=True)
    pred = out.logits[0].argmax(-1)
    for k, j in enumerate(where):
        t = 2 * k  # decoder step whose input is <extra_id_k> (labels shifted right by one)
        right += int(pred[t + 1] == tgt[t + 1]); total += 1
        for layer, a in enumerate(out.cross_attentions):
            for h in range(a.shape[1]):
                mass.setdefault((layer, h), []).append(float(a[0, h, t + 1, j]))
print('proteins %d, masked residues %d, masked-residue accuracy %.3f' % (len(lengths), total, right / total))
print('uniform attention would give %.3f (mean input length %.1f)' % (sum(1 / n for n in lengths) / len(lengths),
                                                                     sum(lengths) / len(lengths)))
print('cross-attention share on the own sentinel, per decoder layer and head:')
for (layer, h), v in sorted(mass.items()):
    print('  layer %d head %d: %.3f' % (layer, h, sum(v) / len(v)))
