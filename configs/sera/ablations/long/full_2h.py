# Long-schedule row "full_2h": the 600-iteration job's SERA model (ablation
# row "full") on the 2-hour schedule of sera_mnv2-minilm_synthetic_2h.py
# (7,200 iterations, validation every 1,200). Paired with routing_uniform_2h:
# does the effect of learned routing grow with training?
_base_ = '../../sera_mnv2-minilm_synthetic_2h.py'
