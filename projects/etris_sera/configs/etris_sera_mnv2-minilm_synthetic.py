# ETRIS-style model with its bridges replaced by SERA-Adapters at the same
# positions and width; everything else is the ETRIS-style baseline's.
_base_ = './etris_mnv2-minilm_synthetic.py'
model = dict(
    backbone=dict(
        adapter=dict(
            _delete_=True, type='SERAAdapter', hidden_channels=32,
            experts=('spatial', 'context', 'boundary', 'semantic'),
            router=dict(type='ExpertRouter', hidden_channels=32),
            num_heads=4)))
