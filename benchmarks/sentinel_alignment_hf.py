"""Can a small T5 learn to align single-residue sentinels in a few hundred steps?

A peer check for the ankh3_pretrain demo. Writes a synthetic FASTA, either
periodic sequences (--data periodic: a random unit of 2-4 residues repeated to
40-120 residues), where every masked residue equals its neighbours one period
away, or successor walks (--data successor: 40-120 residues, each the fixed
successor of the one before in a random 20-cycle), where every masked residue
is the successor of its left neighbour, then trains Hugging Face transformers' T5ForConditionalGeneration with the
demo's model shape (d_model 128, 4 + 2 layers, 4 heads, d_ff 320, gated-silu,
vocabulary 256) on Ankh3-style [NLU] span corruption (span length 1, masking
probability 0.1 / 0.2 / 0.3, sentinels <extra_id_k> = 255 - k) with AdamW
(lr --lr, default 3e-3, 100 warm-up steps, clip 1), and prints the held-out masked-residue
accuracy. Composition alone (predict the unit's most frequent residue) gives
about 1 / period (periodic) or 1 / 20 (successor); exact answers need the decoder to find sentinel k in the
encoder input. Train plm on the same file for comparison:

    python3 benchmarks/sentinel_alignment_hf.py --fasta periodic.fasta --steps 800
    ./build/examples/ankh3_pretrain/ankh3_pretrain --train periodic.fasta --s2s-mix 0 --steps 1500 --out periodic_run

--steps 0 only writes the FASTA.
"""
import argparse, random, torch
from transformers import T5Config, T5ForConditionalGeneration
from ankh3_nlu import RESIDUE_IDS, nlu_example
ap = argparse.ArgumentParser()
ap.add_argument('--fasta', default='periodic.fasta', help='where the synthetic FASTA is written')
ap.add_argument('--steps', type=int, default=800)
ap.add_argument('--threads', type=int, default=2)
ap.add_argument('--data', choices=['periodic', 'successor'], default='periodic')
ap.add_argument('--lr', type=float, default=3e-3)
args = ap.parse_args()
aa='ACDEFGHIKLMNPQRSTVWY'
if args.data == 'periodic':
    random.seed(1)
    with open(args.fasta, 'w') as f:
        for i in range(3000):
            p = random.randint(2, 4); u = ''.join(random.choice(aa) for _ in range(p)); n = random.randint(40, 120)
            f.write('>s%d\n%s\n' % (i, (u * 100)[:n]))
else:
    random.seed(2)
    cycle = list(aa); random.shuffle(cycle)
    succ = {cycle[i]: cycle[(i + 1) % 20] for i in range(20)}
    with open(args.fasta, 'w') as f:
        for i in range(3000):
            c = random.choice(aa); n = random.randint(40, 120); s = []
            for _ in range(n):
                s.append(c); c = succ[c]
            f.write('>s%d\n%s\n' % (i, ''.join(s)))
if args.steps == 0:
    raise SystemExit(0)
torch.manual_seed(0); random.seed(0); torch.set_num_threads(args.threads)
seqs=[]
for l in open(args.fasta):
    if l[0]!='>': seqs.append([RESIDUE_IDS[c] for c in l.strip()])
def example(s):
    inp,tgt,_=nlu_example(s,random.choice([0.1,0.2,0.3]),random)
    return inp,tgt
cfg=T5Config(vocab_size=256,d_model=128,d_kv=32,d_ff=320,num_heads=4,num_layers=4,num_decoder_layers=2,
             relative_attention_num_buckets=32,relative_attention_max_distance=128,feed_forward_proj='gated-silu',
             dropout_rate=0.0,tie_word_embeddings=False,decoder_start_token_id=0,pad_token_id=0,eos_token_id=1)
m=T5ForConditionalGeneration(cfg)
with torch.no_grad(): m.lm_head.weight.mul_(128**-0.5)
opt=torch.optim.AdamW(m.parameters(),lr=args.lr,weight_decay=0.01)
train,valid=seqs[:2850],seqs[2850:]
def batch(ss):
    ex=[example(s) for s in ss]; S=max(len(a) for a,_ in ex); T=max(len(b) for _,b in ex)
    ids=torch.zeros(len(ex),S,dtype=torch.long); am=torch.zeros(len(ex),S,dtype=torch.long); lab=torch.full((len(ex),T),-100)
    for i,(a,b) in enumerate(ex):
        ids[i,:len(a)]=torch.tensor(a); am[i,:len(a)]=1; lab[i,:len(b)]=torch.tensor(b)
    return ids,am,lab
steps=args.steps
for step in range(1,steps+1):
    lr=args.lr*min(1,step/100)
    for g in opt.param_groups: g['lr']=lr
    ids,am,lab=batch(random.sample(train,16))
    out=m(input_ids=ids,attention_mask=am,labels=lab)
    opt.zero_grad(); out.loss.backward(); torch.nn.utils.clip_grad_norm_(m.parameters(),1.0); opt.step()
    if step%200==0:
        with torch.no_grad():
            ids,am,lab=batch(valid[:128]); lg=m(input_ids=ids,attention_mask=am,labels=lab).logits
            pred=lg.argmax(-1); res=(lab>=7)&(lab<27)
            print(step, 'loss %.3f'%out.loss.item(), 'valid residue acc %.3f'%((pred==lab)&res).sum().div(res.sum()).item(), flush=True)
