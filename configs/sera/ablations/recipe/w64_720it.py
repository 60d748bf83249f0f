# Recipe search for the 15-minute main job: the neck and the head 64
# channels wide instead of 96 (the head's feed-forward 128 instead of 192),
# trained for 720 iterations, the batch-32 job's training time: in the
# 760-iteration trial (w64_760it.py) an iteration took 0.85 s over the run
# against about 1.03 s for the batch-32 job's, and 720 x 0.85 s is about its
# 600 x 1.03 s. Over 5 seeds, paired with bs32_600it_lr2e-3.py: val +1.62
# [+0.42, +2.82], testB +1.88 [+0.15, +3.62]. Adopted: this is the main
# job's recipe, and this row its recorded runs.
_base_ = '../../sera_mnv2-minilm_synthetic.py'
