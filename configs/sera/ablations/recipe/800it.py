# Recipe search for the 15-minute main job: the time the exact speed-ups
# saved spent on iterations, 800 instead of 600 (same warm-up, cosine decay
# to the new end). Adopted as the main job of the previous release
# (sera_mnv2-minilm_synthetic_800it.py); this row is its recorded runs.
_base_ = '../../sera_mnv2-minilm_synthetic_800it.py'
