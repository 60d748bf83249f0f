# Recipe search for the 15-minute main job: the time the exact speed-ups
# saved spent on iterations, 800 instead of 600 (same warm-up, cosine decay
# to the new end). Adopted: this is now the main job's schedule
# (sera_mnv2-minilm_synthetic.py), and this row its recorded runs.
_base_ = '../../sera_mnv2-minilm_synthetic.py'
