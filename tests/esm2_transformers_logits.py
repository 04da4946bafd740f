"""What transformers computes from a model directory esm2_pretrain wrote: the
ids AutoTokenizer gives a few sequences (padded batch) and EsmForMaskedLM's
logits in float64, saved for the plm_tests case "esm2_pretrain's model gives
transformers' logits".

    python3 esm2_transformers_logits.py <model dir> <out.safetensors>
"""
import json
import sys

import torch
from safetensors.torch import save_file
from transformers import AutoTokenizer, EsmForMaskedLM

SEQUENCES = [
    "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQVKVKALPDAQFEVVHSLAKWKRQTLGQHDFSAGEGLYTHMKALRPDEDRLSPLHSVYVDQWDWERVMGDGERQFSTLKSTVEAIWAGIKATEAAVSEEFGLAPFLPDQIHFVHSQELLSRYPDLDAKGRERAIAKDLGAVFLVGIGGKLSDGHRHDVRAPDYDDWSTPSELGHAGLNGDILVWNPVLEDAFELSSMGIRVDADTLKHQLALTGDEDRLELEWHQALLRGEMPQTIGGGIGQSRLTMLLLQLPHIGQVQAGVWPAACRERVPALQPL",
    "MAGVLSRVALLRSRAFSLSTGSP",
    "MXVLSUAA",
]


def main():
    model_dir, out = sys.argv[1], sys.argv[2]
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = EsmForMaskedLM.from_pretrained(model_dir, torch_dtype=torch.float64).eval()
    batch = tok(SEQUENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    save_file(
        {
            "input_ids": batch["input_ids"].to(torch.int32).contiguous(),
            "attention_mask": batch["attention_mask"].to(torch.int32).contiguous(),
            "logits": logits.to(torch.float64).contiguous(),
        },
        out,
        metadata={"sequences": json.dumps(SEQUENCES)},
    )


if __name__ == "__main__":
    main()
