# Ablation row "full": the 600-iteration SERA job
# (sera_mnv2-minilm_synthetic_600it.py, neck and head 96 wide) unchanged
# (same schedule, seed and data). The reference row of the ablation table.
_base_ = '../sera_mnv2-minilm_synthetic_600it.py'
