# Ablation row "no_boundary": the SERA-Adapters run without their 'boundary'
# expert (three experts; the router chooses among those three). The
# SERA-Fusion neck is unchanged.
_base_ = '../sera_mnv2-minilm_synthetic_600it.py'
model = dict(
    backbone=dict(adapter=dict(experts=('spatial', 'context', 'semantic'))))
