"""Conv-norm-activation blocks from mmcv's bricks (``ConvModule``,
``build_norm_layer``): the norm comes from mmcv's registry (``GN``, ``BN``,
``SyncBN``, ...), with GroupNorm's group count filled in for the width."""
import copy
from typing import Optional

from mmcv.cnn import ConvModule

from .grid import group_count

#: The norm of SERA-MM's conv blocks unless a config says otherwise:
#: GroupNorm, which does not depend on the batch size.
DEFAULT_NORM_CFG = dict(type='GN')


def norm_cfg_for(norm_cfg: Optional[dict], channels: int) -> Optional[dict]:
    """``norm_cfg`` ready for mmcv's ``build_norm_layer`` at ``channels``.

    GroupNorm (``type='GN'``) gets ``num_groups``: the largest divisor of
    ``channels`` not above the configured count (32 when unset), so any
    width works. Other types pass through; None means no norm.
    """
    if norm_cfg is None:
        return None
    cfg = copy.deepcopy(dict(norm_cfg))
    if cfg.get('type') == 'GN':
        cfg['num_groups'] = group_count(channels,
                                        cfg.get('num_groups') or 32)
    return cfg


class ConvNormAct(ConvModule):
    """mmcv's ``ConvModule`` (conv -> norm -> activation, the conv's bias
    only without a norm) with 'same' padding for its dilation.

    Weights keep PyTorch's default initialisation from their construction
    (``init_weights`` does nothing, instead of ``ConvModule``'s Kaiming
    init): the blocks draw the same random numbers as the ``nn.Conv2d`` +
    norm blocks they replaced, so a seed gives the same model as before and
    the recipes keep the initialisation they were measured with.
    Parameters are named ``conv.*`` and ``<norm name>.*`` (``gn``, ``bn``),
    as in MMSegmentation.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: odd kernel size.
        dilation: dilation (padding ``dilation * (kernel_size // 2)``).
        norm_cfg: mmcv norm config (default GroupNorm, see
            :func:`norm_cfg_for`); None for none.
        act_cfg: mmcv activation config (default ReLU); None for none.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 kernel_size: int,
                 dilation: int = 1,
                 norm_cfg: Optional[dict] = DEFAULT_NORM_CFG,
                 act_cfg: Optional[dict] = dict(type='ReLU')) -> None:
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f'kernel_size must be a positive odd number, '
                             f'got {kernel_size}')
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            padding=dilation * (kernel_size // 2),
            dilation=dilation,
            bias='auto',
            norm_cfg=norm_cfg_for(norm_cfg, out_channels),
            act_cfg=act_cfg)

    def init_weights(self) -> None:
        """Nothing: the conv and norm keep their construction-time
        (PyTorch default) weights; see the class doc."""
