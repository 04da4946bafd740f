#!/usr/bin/env python3
"""Peer measurement for the ESM-2 real-batch masked-LM pre-training benchmark:
passes of training steps (forward with labels, loss, backward, AdamW) of
Hugging Face transformers' EsmForMaskedLM with ESM-2's settings (rotary
positions, token dropout, pre-norm, tied LM head) over the variable-length
batches the C++ side wrote (--batches: JSON Lines, one batch a line,
{"ids": [[id, ...], ...], "labels": [[id or -100, ...], ...]}, unpadded, each
sequence <cls> residues <eos>, labels the original id at the selected
positions and -100 elsewhere). plm packs these sequences; the peer does what
Hugging Face users do and pads each batch to its longest sequence (the batches
are already grouped by length, as group_by_length does).
Eager or torch.compile (--compile), fp32 or bf16 autocast (--autocast bf16,
fp32 master weights), CPU or CUDA; transformers' default attention
implementation (the JSON's "attention" names it).
Prints one JSON line: {"median_s": <median pass time>, "times": [...], ...,
"torch": ..., "transformers": ..., "attention": ...}.

Needs: pip install torch transformers (for the benchmark only)."""
import argparse

import torch
import transformers
from transformers import EsmConfig, EsmForMaskedLM

from real_batches_peer import IGNORE, Peer, attention_mask, compiled, pad, train_and_report

peer = Peer("esm_real_step_hf")


def batch_tensors(ids, labels, pad_id, dev):
    """What a Hugging Face masked-LM collator gives ESM: input_ids padded with
    <pad>, the attention mask, labels padded with -100 (the loss ignores them)."""
    return pad(ids, pad_id).to(dev), attention_mask(ids).to(dev), pad(labels, IGNORE).to(dev)


def main():
    p = argparse.ArgumentParser()
    for name in ["hidden_size", "layers", "heads", "ffn", "vocab", "pad_id", "mask_id", "threads"]:
        p.add_argument("--" + name, type=int, required=True)
    p.add_argument("--token_dropout", type=int, default=1, choices=[0, 1], help="ESM-2's rescaling of the embeddings by the mask ratio")
    p.add_argument("--tie_word_embeddings", type=int, default=1, choices=[0, 1], help="the LM head's decoder is the embedding matrix")
    p.add_argument("--layer_norm_eps", type=float, default=1e-5)
    p.add_argument("--max_positions", type=int, default=1026, help="max_position_embeddings (rotary: unused by the model)")
    peer.common_args(p)
    a = p.parse_args()
    peer.check_passes(a)
    if not (0 <= a.pad_id < a.vocab and 0 <= a.mask_id < a.vocab):
        peer.fail(f"--pad_id {a.pad_id} and --mask_id {a.mask_id} must lie in [0, {a.vocab})")
    dev = torch.device(a.device)
    torch.set_num_threads(a.threads)

    batches = peer.read_batches(a.batches, ("ids", "labels"), a.vocab, ignore_ok=("labels",), same_lengths=True)
    data = [batch_tensors(i, l, a.pad_id, dev) for i, l in batches]
    shapes = {tuple(x.shape) for x, _, _ in data}
    longest = max(x.shape[1] for x, _, _ in data)

    torch.manual_seed(0)
    cfg = EsmConfig(vocab_size=a.vocab, hidden_size=a.hidden_size, num_hidden_layers=a.layers, num_attention_heads=a.heads,
                    intermediate_size=a.ffn, position_embedding_type="rotary", token_dropout=bool(a.token_dropout),
                    mask_token_id=a.mask_id, pad_token_id=a.pad_id, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                    layer_norm_eps=a.layer_norm_eps, emb_layer_norm_before=False,
                    max_position_embeddings=max(a.max_positions, longest), tie_word_embeddings=bool(a.tie_word_embeddings))
    model = EsmForMaskedLM(cfg).float().train().to(dev)
    tied = model.lm_head.decoder.weight.data_ptr() == model.esm.embeddings.word_embeddings.weight.data_ptr()
    if a.tie_word_embeddings and not tied:
        peer.fail(f"transformers {transformers.__version__} did not tie the LM head to the embeddings as asked")
    if not a.tie_word_embeddings and tied:
        model.lm_head.decoder.weight = torch.nn.Parameter(model.esm.embeddings.word_embeddings.weight.detach().clone())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    run = compiled(model, len(shapes)) if a.compile else model
    train_and_report(a, model, run, data, opt, {
        "real_tokens": sum(len(s) for i, _ in batches for s in i),
        "padded_tokens": sum(x.numel() for x, _, _ in data), "shapes": len(shapes)})


if __name__ == "__main__":
    main()
