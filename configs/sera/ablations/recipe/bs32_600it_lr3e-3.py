# Recipe search for the 15-minute main job: the batch-32 job
# (bs32_600it_lr2e-3.py, 600 iterations) at learning rate 3e-3 instead of 2e-3. With fewer,
# larger updates than at batch 16, a higher rate may learn more per step.
_base_ = './bs32_600it_lr2e-3.py'
optim_wrapper = dict(optimizer=dict(lr=3e-3))
