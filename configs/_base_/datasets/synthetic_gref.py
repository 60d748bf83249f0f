# The generalised synthetic benchmark (gRefCOCO layout, split_by
# 'synthetic': train / val / testA / testB): the single-target expressions of
# the synthetic benchmark (same images for the same seed) plus multi-target
# ("all the red circles", "both squares", "every shape left of the ring",
# expr_type 'multi') and no-target ones (an attribute, region or relation
# that matches nothing, expr_type 'no_target'), every one checked against
# its scene. Generated into data/synthetic_gref on first use (about 40 s for
# 2,000 images), or beforehand with
#   python tools/dataset_converters/make_synthetic_refer.py --generalised \
#       --out data/synthetic_gref
_base_ = ['./synthetic.py']
dataset_type = 'SyntheticGReferDataset'
data_root = 'data/synthetic_gref'
generate = dict(num_images=2000, seed=0, image_size=256,
                multi_prob=0.7, no_target_prob=0.5)
train_dataloader = dict(
    dataset=dict(type=dataset_type, data_root=data_root, generate=generate))
val_dataloader = dict(
    dataset=dict(type=dataset_type, data_root=data_root, generate=generate))
test_dataloader = dict(
    dataset=dict(type=dataset_type, data_root=data_root, generate=generate))
val_evaluator = dict(type='GReferMetric')
test_evaluator = val_evaluator
