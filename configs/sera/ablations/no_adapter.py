# Ablation row "no_adapter": no SERA-Adapter in the backbone. With
# adapter=None the backbone builds an empty ``adapters`` dict and ignores
# adapter_indices; the backbone is still tuned by the same PET rule
# (norm/bias of blocks 7-18), the SERA-Fusion neck and head are unchanged.
_base_ = '../sera_mnv2-minilm_synthetic_600it.py'
model = dict(backbone=dict(adapter=None, adapter_indices=()))
