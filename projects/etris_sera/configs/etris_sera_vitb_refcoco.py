# ETRIS with its bridges replaced by SERA-Adapters at the same blocks
# (3, 7, 11) and width (64). Everything else is ETRIS's.
_base_ = './etris_vitb_refcoco.py'
model = dict(
    backbone=dict(
        adapter=dict(
            _delete_=True,
            type='SERAAdapter',
            hidden_channels=64,
            experts=('spatial', 'context', 'boundary', 'semantic'),
            router=dict(type='ExpertRouter', hidden_channels=64),
            num_heads=4)))
