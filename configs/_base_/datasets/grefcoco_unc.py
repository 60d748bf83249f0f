# gRefCOCO (generalised RIS, ReLA / GRES, CVPR 2023), UNC partition (train /
# val / testA / testB): an expression may name several objects or none.
# Public layout (refs as released with ReLA's gRefCOCO, images from COCO 2014
# train):
#   data/grefcoco/grefs(unc).json     (or grefs(unc).p, same records)
#   data/grefcoco/instances.json
#   data/coco/train2014/COCO_train2014_*.jpg
# The target mask is the union of a ref's annotations (empty for no target);
# the metric is GReferMetric (gIoU, cIoU, N-acc, T-acc, Prec@0.7/0.8/0.9).
# val uses 'val', test uses 'testA'; evaluate testB with
#   --cfg-options test_dataloader.dataset.split=testB
_base_ = ['./refcoco_unc.py']
dataset_type = 'GReferDataset'
data_root = 'data/grefcoco'
train_dataloader = dict(
    dataset=dict(type=dataset_type, data_root=data_root))
val_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
test_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
val_evaluator = dict(type='GReferMetric')
test_evaluator = val_evaluator
