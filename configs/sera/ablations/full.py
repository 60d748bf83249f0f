# Ablation row "full": the main synthetic SERA model unchanged (same
# schedule, seed and data). The reference row of the ablation table.
_base_ = '../sera_mnv2-minilm_synthetic_600it.py'
