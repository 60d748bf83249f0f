# The 600-iteration job on the generalised synthetic benchmark: the model and
# 600-iteration schedule of sera_mnv2-minilm_synthetic_600it.py (MobileNetV2
# + all-MiniLM-L6-v2, about 15 minutes on a 2-core CPU) on multi-target and no-target
# expressions, with a no-target head, a Dice loss defined on empty masks and
# the generalised metric (gIoU, cIoU, N-acc, T-acc, Prec@0.7/0.8/0.9, per
# expression type including 'multi' and 'no_target'):
#   python tools/train.py configs/sera/sera_mnv2-minilm_synthetic_gref.py
# The dataset (as configs/_base_/datasets/synthetic_gref.py) is generated
# into data/synthetic_gref on first use.
_base_ = ['./sera_mnv2-minilm_synthetic_600it.py']
_gref = dict(
    type='SyntheticGReferDataset',
    data_root='data/synthetic_gref',
    generate=dict(num_images=2000, seed=0, image_size=256,
                  multi_prob=0.7, no_target_prob=0.5))
train_dataloader = dict(dataset=_gref)
val_dataloader = dict(dataset=_gref)
test_dataloader = dict(dataset=_gref)
val_evaluator = dict(type='GReferMetric')
test_evaluator = val_evaluator
model = dict(
    decode_head=dict(
        loss_decode=[
            dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0),
            dict(type='SmoothDiceLoss', smooth=1.0, loss_weight=1.0)
        ],
        no_target_head=dict(
            type='NoTargetHead', hidden_channels=128, dropout=0.0,
            threshold=0.5, loss_weight=1.0)))
