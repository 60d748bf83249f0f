# Recipe search for the 15-minute main job: twice the learning rate.
_base_ = '../../sera_mnv2-minilm_synthetic_600it.py'
optim_wrapper = dict(optimizer=dict(lr=2e-3))
