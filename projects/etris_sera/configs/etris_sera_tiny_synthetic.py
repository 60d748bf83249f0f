# Tiny ETRIS with SERA-Adapters in place of the bridges.
_base_ = './etris_tiny_synthetic.py'
model = dict(
    backbone=dict(
        adapter=dict(
            _delete_=True,
            type='SERAAdapter',
            hidden_channels=16,
            router=dict(type='ExpertRouter', hidden_channels=16),
            num_heads=2)))
